// Which button an error card offers. The words come from the shell (AppError's
// message, worded once in src-tauri/src/error.rs and the crates' error types);
// the UI only decides where the user can act, by the stable code.

import type { UiErrorCode } from "../api";
import type { ErrorCode } from "../bindings";

export type ErrorAction = "settings" | "retry" | null;

/**
 * Every code the shell sends (the generated `ErrorCode`) and its button. A `Record`
 * over the union, so TypeScript fails when a code has no action (a new variant) and
 * when one is listed that the shell no longer sends (a removed variant): the keys are
 * exactly the codes something sends.
 */
export const ERROR_ACTIONS: Record<ErrorCode, ErrorAction> = {
  // A setting fixes these: the card opens Settings.
  model_not_found: "settings",
  model_not_loaded: "settings",
  context_length_exceeded: "settings",
  no_chat_template: "settings",
  invalid_request: "settings",
  backend_unavailable: "settings",
  invalid_model: "settings",
  load_failed: "settings",
  context_failed: "settings",
  invalid_settings: "settings",
  invalid_sampling: "settings",
  not_configured: "settings",
  downloads_off: "settings",
  invalid_api_key: "settings",
  // Nothing to press: sending again once the status says Ready is the fix.
  model_loading: null,
  // A later try may succeed.
  busy: "retry",
  backend_crashed: "retry",
  upstream_error: "retry",
  generation_failed: "retry",
  generation_incomplete: "retry",
  internal: "retry",
  template_failed: "retry",
  decode_failed: "retry",
  engine_stopped: "retry",
  scratch_file: "retry",
  ollama_error: "retry",
  ollama_bad_response: "retry",
  ollama_bad_chunk: "retry",
  ollama_request: "retry",
  not_found: "retry",
  unsupported_media_type: "retry",
  request_too_large: "retry",
  host_not_allowed: "retry",
  method_not_allowed: "retry",
  rate_limit_exceeded: "retry",
  overloaded: "retry",
  request_timeout: "retry",
  too_many_connections: "retry",
  request_header_fields_too_large: "retry",
  uri_too_long: "retry",
  malformed_request: "retry",
  nothing_to_regenerate: "retry",
  history_unavailable: "retry",
  history_error: "retry",
  settings_not_saved: "retry",
  export_failed: "retry",
  models_unreadable: "retry",
  model_exists: "retry",
  import_failed: "retry",
  devices_unavailable: "retry",
  unauthorized: "retry",
  network: "retry",
  disk_full: "retry",
  corrupt_download: "retry",
  download_failed: "retry",
  cancelled: "retry",
  invalid_type: "retry",
  already_quantized: "retry",
  quantize_failed: "retry",
};

/** The card's button for a code; a failure of the IPC itself (`ipc`) may pass on a retry. */
export function actionFor(code: UiErrorCode): ErrorAction {
  if (code === "ipc") return "retry";
  return ERROR_ACTIONS[code];
}
