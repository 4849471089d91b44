// What a failure means for the user and what to do about it. Codes come from
// the shell's AppError (BackendError::code, EngineError::code and the like).

export type ErrorAction = "settings" | "retry" | "dashboard" | null;

export interface ErrorAdvice {
  title: string;
  hint: string;
  action: ErrorAction;
}

const ADVICE: Record<string, ErrorAdvice> = {
  model_not_found: {
    title: "Model file missing",
    hint: "Choose another model in Settings, or import the GGUF file again.",
    action: "settings",
  },
  model_not_loaded: { title: "No model loaded", hint: "Pick a model in Settings and save.", action: "settings" },
  model_loading: { title: "The model is still loading", hint: "Send again when the status says Ready.", action: null },
  invalid_model: {
    title: "Not a usable model file",
    hint: "Choose another GGUF file in Settings.",
    action: "settings",
  },
  no_chat_template: {
    title: "This model has no chat template",
    hint: "Choose a chat/instruct model in Settings.",
    action: "settings",
  },
  context_length_exceeded: {
    title: "The conversation is longer than the model's context",
    hint: "Start a new chat, or raise the context size in Settings.",
    action: "settings",
  },
  out_of_memory: {
    title: "Not enough memory for this model",
    hint: "Lower GPU layers or context in Settings, or choose a smaller quantization.",
    action: "settings",
  },
  load_failed: {
    title: "The model could not be loaded",
    hint: "Check the fit verdict in Settings; try fewer GPU layers or a smaller context.",
    action: "settings",
  },
  context_failed: {
    title: "The model's context could not be created",
    hint: "Lower the context size or GPU layers in Settings.",
    action: "settings",
  },
  backend_unavailable: {
    title: "The backend is not reachable",
    hint: "Start it (e.g. `ollama serve`) or check its URL in Settings, then retry.",
    action: "settings",
  },
  backend_crashed: {
    title: "The model process stopped unexpectedly",
    hint: "It is being restarted; retry in a moment.",
    action: "retry",
  },
  engine_stopped: { title: "The engine stopped", hint: "Retry; if it keeps happening, check Settings.", action: "retry" },
  busy: { title: "The backend is busy", hint: "Wait a few seconds and retry.", action: "retry" },
  decode_failed: { title: "Generation failed", hint: "Retry; if it repeats, lower the context size.", action: "retry" },
  invalid_request: {
    title: "The request was not accepted",
    hint: "Check the sampling values in Settings.",
    action: "settings",
  },
  invalid_settings: { title: "Invalid settings", hint: "Fix the highlighted fields in Settings.", action: "settings" },
  ipc: { title: "The app's core did not answer", hint: "Restart Hearth if this persists.", action: "retry" },
};

/** Case- and separator-insensitive, so "ModelNotFound" and "model_not_found" match. */
function key(code: string): string {
  return code.toLowerCase().replace(/[^a-z0-9]/g, "");
}

const BY_KEY = new Map(Object.entries(ADVICE).map(([code, advice]) => [key(code), advice]));

export function adviceFor(code: string): ErrorAdvice {
  const known = BY_KEY.get(key(code));
  if (known) return known;
  if (/memory|oom/i.test(code)) return ADVICE.out_of_memory!;
  return { title: "Something went wrong", hint: "Retry, or check Settings.", action: "retry" };
}
