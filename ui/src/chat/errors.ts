// Which button an error card offers. The words come from the shell (AppError's
// message, worded once in src-tauri/src/error.rs and the crates' error types);
// the UI only decides where the user can act, by the stable code.

export type ErrorAction = "settings" | "retry" | null;

const SETTINGS = [
  "model_not_found",
  "model_not_loaded",
  "invalid_model",
  "no_chat_template",
  "context_length_exceeded",
  "out_of_memory",
  "load_failed",
  "context_failed",
  "backend_unavailable",
  "not_configured",
  "invalid_request",
  "invalid_settings",
];
const NONE = ["model_loading", "busy_generating"];

/** Case- and separator-insensitive, so "ModelNotFound" and "model_not_found" match. */
function key(code: string): string {
  return code.toLowerCase().replace(/[^a-z0-9]/g, "");
}

const ACTIONS = new Map<string, ErrorAction>([
  ...SETTINGS.map((code) => [key(code), "settings"] as const),
  ...NONE.map((code) => [key(code), null] as const),
]);

/** Settings for what a setting can fix, otherwise Retry. */
export function actionFor(code: string): ErrorAction {
  const known = ACTIONS.get(key(code));
  if (known !== undefined) return known;
  if (/memory|oom/i.test(code)) return "settings";
  return "retry";
}
