// The settings form: one input per SettingsView field (data-testid
// `setting-<name>`), an error line under each, and reading the values back.
import { BACKENDS, type DeviceOption, type MeasuredView, type ModelView, type SettingsView } from "../api";
import { h } from "../dom";
import { formatBytes, formatTps } from "../format";
import { canonicalDevice, deviceChoices } from "./devices";
import { FORM_FIELDS, GROUPS, helpOf, type FieldErrors, type FormField, type Group, type SettingName } from "./schema";

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
  setDevices(devices: DeviceOption[]): void;
  /** The devices could not be listed: the device is typed instead, and `message` says why. */
  devicesUnavailable(message: string): void;
  showErrors(errors: FieldErrors, general?: string | null): void;
  clearErrors(): void;
}

const input = (type: string, extra: Record<string, string | number | null> = {}): HTMLInputElement => h("input", { type, ...extra });

/** The control a field's kind of value takes. */
function controlFor(field: FormField): Control {
  const v = field.value;
  const placeholder = field.placeholder || null;
  switch (v.type) {
    case "backend":
      return h("select", {}, ...BACKENDS.map((b) => h("option", { value: b.kind, text: b.label, title: b.description })));
    // A picker of the installed models; of the devices once listed (typed if they cannot be).
    case "model":
    case "device":
      return h("select", {});
    case "integer":
    case "decimal":
      return input("number", { min: v.min, max: v.max, step: v.step });
    case "url":
      return input("url", { placeholder });
    case "token":
      return input("password", { autocomplete: "off", placeholder });
    case "toggle":
      return input("checkbox");
    case "longText":
      return h("textarea", { rows: 4 });
    case "autoOrCount":
    case "text":
    case "backendList":
      return input("text", { placeholder });
  }
}

const GROUP_TITLES: Record<Group, string> = {
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
  const groups = new Map<Group, HTMLFieldSetElement>(
    GROUPS.map((g) => [g, h("fieldset", { class: `group group-${g}` }, h("legend", { text: GROUP_TITLES[g] }))]),
  );
  const general = h("div", { class: "form-error", role: "alert", "data-testid": "settings-error", hidden: true });
  const modelInfo = h("div", { class: "model-info", "data-testid": "model-info" });
  const modelActions = h("div", { class: "model-actions inline" });
  const deviceNote = h("div", { class: "device-note", role: "status", "data-testid": "device-note", hidden: true });
  /** The device picker, and the text field that stands in for it when listing fails. */
  let deviceSelect: HTMLSelectElement | null = null;
  const deviceText = h("input", { type: "text", placeholder: "auto", spellcheck: "false" });
  let devices: DeviceOption[] = [];
  let devicesListed = false;
  let models: ModelView[] = [];
  let modelsByName = false;

  for (const spec of FORM_FIELDS) {
    const group = groups.get(spec.group)!;
    const control = controlFor(spec);
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
      helpOf(spec) ? h("div", { class: "help", text: helpOf(spec) }) : null,
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
      for (const field of FORM_FIELDS) {
        const value = s[field.name];
        const control = controls[field.name];
        switch (field.value.type) {
          case "model":
            form.setModels(models, String(value));
            break;
          case "device":
            showDevice(String(value));
            break;
          case "toggle":
            (control as HTMLInputElement).checked = value === true;
            break;
          default:
            control.value = value === null ? "" : String(value);
        }
      }
      showBackendGroups();
    },
    read() {
      const values: Record<string, unknown> = {};
      for (const field of FORM_FIELDS) {
        const name = field.name;
        switch (field.value.type) {
          case "integer":
          case "decimal":
            values[name] = num(name);
            break;
          case "toggle":
            values[name] = (controls[name] as HTMLInputElement).checked;
            break;
          case "autoOrCount":
            values[name] = str(name).trim().toLowerCase() || "auto";
            break;
          case "device":
            values[name] = canonicalDevice(str(name), devices);
            break;
          case "backend":
          case "model":
            values[name] = str(name);
            break;
          default:
            values[name] = optional(name);
        }
      }
      // Every field of the view is in the table (a test holds them equal).
      return values as unknown as SettingsView;
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
