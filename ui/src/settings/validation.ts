// Client-side checks mirror the shell's (which has the last word): they catch
// typos before a round trip, and map a server error back to the field it names.
import { BACKENDS, type SettingsView } from "../api";

export type SettingName = keyof SettingsView;
export type FieldErrors = Partial<Record<SettingName, string>>;

export const SETTING_NAMES: readonly SettingName[] = [
  "backend",
  "model",
  "ctx",
  "gpuLayers",
  "device",
  "ollamaUrl",
  "ollamaModel",
  "vllmUrl",
  "vllmModel",
  "temperature",
  "topP",
  "maxTokens",
  "systemPrompt",
  "apiEnabled",
  "apiPort",
  "apiToken",
  "parallel",
];

/** The most sequences the engine decodes at once (the shell's MAX_PARALLEL). */
export const MOST_PARALLEL = 64;

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

export function validateSettings(s: SettingsView): FieldErrors {
  const errors: FieldErrors = {};
  if (!BACKENDS.some((b) => b.kind === s.backend)) errors.backend = `Choose one of: ${BACKENDS.map((b) => b.label).join(", ")}.`;
  if (s.backend === "embedded" && s.model.trim() === "") errors.model = "Choose a model.";
  if (!Number.isInteger(s.ctx) || s.ctx < 256 || s.ctx > 1_048_576) {
    errors.ctx = "Context must be a whole number from 256 to 1048576.";
  }
  const layers = s.gpuLayers.trim();
  if (layers !== "auto" && !/^\d+$/.test(layers)) errors.gpuLayers = 'Use "auto" or a whole number of layers (0 = CPU only).';
  const device = s.device.trim();
  if (device === "" || /\s/.test(device)) errors.device = "Use auto, cpu or a device `hearth hw` lists, e.g. vulkan0.";
  if (!Number.isFinite(s.temperature) || s.temperature < 0 || s.temperature > 2) {
    errors.temperature = "Temperature must be between 0 and 2.";
  }
  if (!Number.isFinite(s.topP) || s.topP <= 0 || s.topP > 1) errors.topP = "Top-p must be greater than 0 and at most 1.";
  if (!Number.isInteger(s.maxTokens) || s.maxTokens < 1) errors.maxTokens = "Max tokens must be a whole number of at least 1.";
  if (s.backend === "ollama") {
    if (!s.ollamaUrl || !isHttpUrl(s.ollamaUrl)) errors.ollamaUrl = "Enter the Ollama URL, e.g. http://127.0.0.1:11434.";
    if (!s.ollamaModel?.trim()) errors.ollamaModel = "Enter the Ollama model name, e.g. llama3.2.";
  } else if (s.ollamaUrl && !isHttpUrl(s.ollamaUrl)) {
    errors.ollamaUrl = "Not an http(s) URL.";
  }
  if (s.backend === "vllm") {
    if (!s.vllmUrl || !isHttpUrl(s.vllmUrl)) errors.vllmUrl = "Enter the server URL, e.g. http://127.0.0.1:8000.";
    if (!s.vllmModel?.trim()) errors.vllmModel = "Enter the served model name.";
  } else if (s.vllmUrl && !isHttpUrl(s.vllmUrl)) {
    errors.vllmUrl = "Not an http(s) URL.";
  }
  if (!Number.isInteger(s.apiPort) || s.apiPort < 0 || s.apiPort > 65535) {
    errors.apiPort = "Port must be a whole number from 0 (any free port) to 65535.";
  }
  if (s.apiToken !== null && /\s/.test(s.apiToken.trim())) errors.apiToken = "The token must be one word, without spaces.";
  const parallel = s.parallel.trim();
  const n = Number(parallel);
  if (parallel !== "auto" && !(/^\d+$/.test(parallel) && n >= 1 && n <= MOST_PARALLEL)) {
    errors.parallel = `Use "auto" or a whole number from 1 to ${MOST_PARALLEL}.`;
  }
  return errors;
}

/** The setting a shell error's `field` names, if the form shows it. */
export function settingName(field: string | null | undefined): SettingName | null {
  return field && (SETTING_NAMES as readonly string[]).includes(field) ? (field as SettingName) : null;
}
