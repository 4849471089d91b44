// The settings form: one input per SettingsView field (data-testid
// `setting-<name>`), an error line under each, and reading the values back.
import { BACKENDS, type BackendKind, type DeviceView, type MeasuredView, type ModelView, type SettingsView } from "../api";
import { h } from "../dom";
import { formatBytes, formatTps } from "../format";
import { canonicalDevice, deviceChoices } from "./devices";
import type { FieldErrors, SettingName } from "./validation";

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

export interface SettingsForm {
  el: HTMLFormElement;
  controls: Record<SettingName, Control>;
  fill(settings: SettingsView): void;
  read(): SettingsView;
  setModels(models: ModelView[], selected?: string): void;
  /** The model the Model field names, if it is in the list. */
  selectedModel(): ModelView | undefined;
  /** Under the model's description: where the panel puts actions on the model. */
  modelActions: HTMLElement;
  /** Fills the device picker with the devices there are (and the plan for the model on each). */
  setDevices(devices: DeviceView[]): void;
  /** The devices could not be listed: the device is typed instead, and `message` says why. */
  devicesUnavailable(message: string): void;
  showErrors(errors: FieldErrors, general?: string | null): void;
  clearErrors(): void;
}

interface FieldSpec {
  name: SettingName;
  label: string;
  /** A backend's own fields are in the group named after its kind. */
  group: "general" | BackendKind | "sampling" | "api";
  make: () => Control;
  help?: string;
}

const input = (type: string, extra: Record<string, string | number> = {}): (() => HTMLInputElement) => () =>
  h("input", { type, ...extra });

const SPECS: FieldSpec[] = [
  {
    name: "backend",
    label: "Backend",
    group: "general",
    make: () => h("select", {}, ...BACKENDS.map((b) => h("option", { value: b.kind, text: b.label, title: b.description }))),
  },
  { name: "model", label: "Model", group: "embedded", make: () => h("select", {}) },
  { name: "ctx", label: "Context (tokens)", group: "embedded", make: input("number", { min: 256, step: 256 }) },
  {
    name: "gpuLayers",
    label: "GPU layers",
    group: "embedded",
    make: input("text", { placeholder: "auto" }),
    help: '"auto" lets the fit planner choose; 0 runs on the CPU.',
  },
  {
    name: "device",
    label: "Device",
    group: "embedded",
    // A picker once the devices are listed; typed (auto, cpu, vulkan0) if they cannot be.
    make: () => h("select", {}),
    help: "Where the model runs, with what fits on each GPU. Changing it reloads the model.",
  },
  { name: "ollamaUrl", label: "Ollama URL", group: "ollama", make: input("url", { placeholder: "http://127.0.0.1:11434" }) },
  { name: "ollamaModel", label: "Ollama model", group: "ollama", make: input("text", { placeholder: "llama3.2" }) },
  { name: "vllmUrl", label: "Server URL", group: "vllm", make: input("url", { placeholder: "http://127.0.0.1:8000" }) },
  { name: "vllmModel", label: "Served model", group: "vllm", make: input("text") },
  { name: "temperature", label: "Temperature", group: "sampling", make: input("number", { min: 0, max: 2, step: 0.05 }) },
  { name: "topP", label: "Top-p", group: "sampling", make: input("number", { min: 0, max: 1, step: 0.01 }) },
  { name: "maxTokens", label: "Max tokens", group: "sampling", make: input("number", { min: 1, step: 1 }) },
  { name: "systemPrompt", label: "System prompt", group: "sampling", make: () => h("textarea", { rows: 4 }) },
  {
    name: "apiEnabled",
    label: "Serve the API",
    group: "api",
    make: input("checkbox"),
    help: "OpenAI-compatible, on 127.0.0.1 only: editors and scripts use the loaded model while you chat (base URL http://127.0.0.1:PORT/v1). Turning it on or off reloads the model.",
  },
  { name: "apiPort", label: "Port", group: "api", make: input("number", { min: 0, max: 65535, step: 1 }), help: "0 picks any free port." },
  {
    name: "apiToken",
    label: "Token",
    group: "api",
    make: input("password", { autocomplete: "off", placeholder: "none" }),
    help: "If set, clients must send it as a bearer token (api_key in OpenAI's clients).",
  },
  {
    name: "parallel",
    label: "Replies at once",
    group: "api",
    make: input("text", { placeholder: "auto" }),
    help: '"auto": as many as fit beside the model (at most 4); each shares the machine\'s speed.',
  },
];

const GROUP_TITLES: Record<FieldSpec["group"], string> = {
  general: "Backend",
  embedded: "Embedded model",
  ollama: "Ollama",
  vllm: "vLLM / OpenAI-compatible server",
  sampling: "Generation",
  api: "Local API",
};

export function modelSummary(m: ModelView): string {
  const parts = [formatBytes(m.sizeBytes), m.quantization, m.architecture];
  if (m.contextLength) parts.push(`${m.contextLength.toLocaleString("en-US")} ctx`);
  return parts.filter((p): p is string => Boolean(p)).join(" · ");
}

/** A measurement in a line: perplexity, and against the reference KL and top-token agreement. */
export function measuredSummary(m: MeasuredView): string {
  const parts = [`perplexity ${m.perplexity.toFixed(2)} on ${m.tokensScored.toLocaleString("en-US")} tokens`];
  if (m.referenceName !== null && m.klMean !== null && m.sameTopPercent !== null) {
    parts.push(`vs ${m.referenceName}: KL ${m.klMean.toFixed(4)}, same top token ${m.sameTopPercent.toFixed(1)}%`);
  }
  parts.push(`${m.bitsPerWeight.toFixed(2)} bits/weight`);
  if (m.ramAfterLoadBytes !== null) parts.push(`${formatBytes(m.ramAfterLoadBytes)} RAM`);
  if (m.decodeTps !== null) parts.push(formatTps(m.decodeTps));
  return parts.join(" · ");
}

export function createSettingsForm(): SettingsForm {
  const controls = {} as Record<SettingName, Control>;
  const errorLines = {} as Record<SettingName, HTMLElement>;
  const groups = new Map<FieldSpec["group"], HTMLFieldSetElement>();
  const general = h("div", { class: "form-error", role: "alert", "data-testid": "settings-error", hidden: true });
  const modelInfo = h("div", { class: "model-info", "data-testid": "model-info" });
  const modelActions = h("div", { class: "model-actions inline" });
  const deviceNote = h("div", { class: "device-note", role: "status", "data-testid": "device-note", hidden: true });
  /** The device picker, and the text field that stands in for it when listing fails. */
  let deviceSelect: HTMLSelectElement | null = null;
  const deviceText = h("input", { type: "text", placeholder: "auto", spellcheck: "false" });
  let devices: DeviceView[] = [];
  let devicesListed = false;
  let models: ModelView[] = [];
  let modelsByName = false;

  for (const spec of SPECS) {
    let group = groups.get(spec.group);
    if (!group) {
      group = h("fieldset", { class: `group group-${spec.group}` }, h("legend", { text: GROUP_TITLES[spec.group] }));
      groups.set(spec.group, group);
    }
    const control = spec.make();
    const id = `setting-${spec.name}`;
    control.id = id;
    control.name = spec.name;
    control.dataset.testid = id;
    const error = h("div", { class: "field-error", id: `${id}-error`, "data-testid": `${id}-error`, hidden: true });
    control.setAttribute("aria-describedby", error.id);
    controls[spec.name] = control;
    errorLines[spec.name] = error;
    const field = h(
      "div",
      { class: "field" },
      h("label", { for: id, text: spec.label }),
      control,
      spec.help ? h("div", { class: "help", text: spec.help }) : null,
      spec.name === "device" ? deviceNote : null,
      error,
    );
    if (spec.name === "device" && control instanceof HTMLSelectElement) deviceSelect = control;
    group.append(field);
    if (spec.name === "model") group.append(modelInfo, modelActions);
  }

  const el = h("form", { class: "settings-form", novalidate: true }, general, ...groups.values());

  function selectedModel(): ModelView | undefined {
    const value = controls.model.value;
    return models.find((m) => (modelsByName ? m.name : m.path) === value);
  }

  function describeModel(): void {
    const m = selectedModel();
    modelInfo.replaceChildren();
    if (!m) return;
    modelInfo.append(h("div", { class: "model-summary", text: modelSummary(m) }));
    if (m.fit) modelInfo.append(h("div", { class: "fit", "data-testid": "model-fit", text: `Fit: ${m.fit}` }));
    if (m.measured) {
      modelInfo.append(h("div", { class: "measured", "data-testid": "model-measured", text: `Measured: ${measuredSummary(m.measured)}` }));
    }
    if (!m.hasChatTemplate) {
      modelInfo.append(h("div", { class: "warning", text: "No chat template: this model may not follow a conversation." }));
    }
    modelInfo.append(h("div", { class: "path", text: m.path }));
  }

  function showBackendGroups(): void {
    const backend = controls.backend.value;
    for (const b of BACKENDS) groups.get(b.kind)!.hidden = backend !== b.kind;
  }

  /** Puts `next` where the `name` control is, under its id, name and test id. */
  function replaceControl(name: SettingName, next: Control): void {
    const current = controls[name];
    if (current === next) return;
    next.id = current.id;
    next.name = current.name;
    next.dataset.testid = current.dataset.testid;
    next.setAttribute("aria-describedby", current.getAttribute("aria-describedby") ?? "");
    current.replaceWith(next);
    controls[name] = next;
  }

  /** Shows `selected` in the device field: picked among the entries, or typed. */
  function showDevice(selected: string): void {
    const control = controls.device;
    if (control instanceof HTMLSelectElement) {
      const choices = deviceChoices(devices, selected, devicesListed);
      control.replaceChildren(...choices.map((c) => h("option", { value: c.value, text: c.label, title: c.title || null })));
      control.value = canonicalDevice(selected, devices);
    } else {
      control.value = selected;
    }
  }

  controls.backend.addEventListener("change", showBackendGroups);
  controls.model.addEventListener("change", describeModel);

  const str = (name: SettingName): string => controls[name].value;
  const optional = (name: SettingName): string | null => (str(name).trim() === "" ? null : str(name).trim());
  const num = (name: SettingName): number => (str(name).trim() === "" ? Number.NaN : Number(str(name)));

  const form: SettingsForm = {
    el,
    controls,
    modelActions,
    selectedModel,
    setDevices(list) {
      const selected = controls.device.value;
      devices = list;
      devicesListed = true;
      if (deviceSelect) replaceControl("device", deviceSelect);
      showDevice(selected);
      deviceNote.hidden = true;
      deviceNote.textContent = "";
    },
    devicesUnavailable(message) {
      const selected = controls.device.value;
      devices = [];
      devicesListed = false;
      replaceControl("device", deviceText);
      showDevice(selected);
      deviceNote.textContent = `Could not list the devices: ${message}`;
      deviceNote.hidden = false;
    },
    fill(s) {
      controls.backend.value = s.backend;
      form.setModels(models, s.model);
      controls.ctx.value = String(s.ctx);
      controls.gpuLayers.value = s.gpuLayers;
      showDevice(s.device);
      controls.ollamaUrl.value = s.ollamaUrl ?? "";
      controls.ollamaModel.value = s.ollamaModel ?? "";
      controls.vllmUrl.value = s.vllmUrl ?? "";
      controls.vllmModel.value = s.vllmModel ?? "";
      controls.temperature.value = String(s.temperature);
      controls.topP.value = String(s.topP);
      controls.maxTokens.value = String(s.maxTokens);
      controls.systemPrompt.value = s.systemPrompt ?? "";
      (controls.apiEnabled as HTMLInputElement).checked = s.apiEnabled;
      controls.apiPort.value = String(s.apiPort);
      controls.apiToken.value = s.apiToken ?? "";
      controls.parallel.value = s.parallel;
      showBackendGroups();
    },
    read() {
      return {
        backend: str("backend") as BackendKind,
        model: str("model"),
        ctx: num("ctx"),
        gpuLayers: str("gpuLayers").trim().toLowerCase() || "auto",
        device: canonicalDevice(str("device"), devices),
        ollamaUrl: optional("ollamaUrl"),
        ollamaModel: optional("ollamaModel"),
        vllmUrl: optional("vllmUrl"),
        vllmModel: optional("vllmModel"),
        temperature: num("temperature"),
        topP: num("topP"),
        maxTokens: num("maxTokens"),
        systemPrompt: optional("systemPrompt"),
        apiEnabled: (controls.apiEnabled as HTMLInputElement).checked,
        apiPort: num("apiPort"),
        apiToken: optional("apiToken"),
        parallel: str("parallel").trim().toLowerCase() || "auto",
      };
    },
    setModels(list, selected = controls.model.value) {
      models = list;
      // The shell may name the model by file path or by name; answer in kind.
      modelsByName = list.some((m) => m.name === selected) && !list.some((m) => m.path === selected);
      const select = controls.model as HTMLSelectElement;
      const options = list.map((m) => {
        const value = modelsByName ? m.name : m.path;
        const detail = [formatBytes(m.sizeBytes), m.quantization].filter(Boolean).join(", ");
        return h("option", { value, text: `${m.name} (${detail})` });
      });
      if (selected && !list.some((m) => (modelsByName ? m.name : m.path) === selected)) {
        options.unshift(h("option", { value: selected, text: `${selected} (not found)` }));
      }
      if (options.length === 0) options.push(h("option", { value: "", text: "No models: import a GGUF file below" }));
      select.replaceChildren(...options);
      select.value = selected;
      describeModel();
    },
    showErrors(errors, generalMessage = null) {
      form.clearErrors();
      for (const [name, message] of Object.entries(errors) as Array<[SettingName, string]>) {
        const line = errorLines[name];
        line.textContent = message;
        line.hidden = false;
        controls[name].setAttribute("aria-invalid", "true");
        controls[name].closest(".field")?.classList.add("invalid");
        // A field in a hidden group still needs to be seen.
        const group = controls[name].closest("fieldset");
        if (group) group.hidden = false;
      }
      if (generalMessage) {
        general.textContent = generalMessage;
        general.hidden = false;
      }
    },
    clearErrors() {
      for (const name of Object.keys(errorLines) as SettingName[]) {
        errorLines[name].hidden = true;
        errorLines[name].textContent = "";
        controls[name].removeAttribute("aria-invalid");
        controls[name].closest(".field")?.classList.remove("invalid");
      }
      general.hidden = true;
      general.textContent = "";
    },
  };
  return form;
}
