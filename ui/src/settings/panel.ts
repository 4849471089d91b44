// The Settings tab: load, validate, save (applied by the shell without a
// restart), list the devices the model can run on, import a GGUF file by path,
// and quantize the selected model.
import { ApiError, toApiError, type Api } from "../api";
import { h, on } from "../dom";
import type { Store } from "../state";
import { createSettingsForm, type SettingsForm } from "./form";
import { createQuantizeDialog, type QuantizeApi } from "./quantize";
import { settingName, validateSettings } from "./schema";

export interface SettingsPanel {
  el: HTMLElement;
  form: SettingsForm;
  /** Re-reads settings and models from the shell. */
  load(): Promise<void>;
  save(): Promise<boolean>;
}

type SettingsApi = Pick<
  Api,
  "getSettings" | "saveSettings" | "listModels" | "listDevices" | "importModel" | "chooseModelFile"
> &
  QuantizeApi;

export function createSettingsPanel(store: Store, api: SettingsApi): SettingsPanel {
  const form = createSettingsForm();
  const save = h("button", { type: "submit", class: "primary", "data-testid": "settings-save", text: "Save" });
  const note = h("span", { class: "save-note", "data-testid": "settings-note", role: "status" });
  const importPath = h("input", {
    type: "text",
    class: "import-path",
    placeholder: "/path/to/model.gguf",
    "aria-label": "Path of a GGUF file",
    "data-testid": "import-path",
  });
  const chooseButton = h("button", { type: "button", "data-testid": "import-choose", text: "Choose file…" });
  const importButton = h("button", { type: "button", "data-testid": "import-model", text: "Import GGUF…" });
  const importNote = h("div", { class: "field-error", "data-testid": "import-error", hidden: true });
  const importBar = h("progress", { max: 1, value: 0, hidden: true, "data-testid": "import-progress" });
  const importBox = h(
    "fieldset",
    { class: "group" },
    h("legend", { text: "Import a model" }),
    h("div", { class: "inline" }, chooseButton, importPath, importButton),
    importBar,
    importNote,
  );
  form.el.append(h("div", { class: "form-actions" }, save, note));
  const quantize = createQuantizeDialog(api, (done) => {
    void refreshModels().then(() => {
      note.textContent = `Made ${done.model.name}. Choose it above and Save to use it.`;
    });
  });
  const quantizeButton = h("button", { type: "button", "data-testid": "quantize-open", text: "Quantize…" });
  form.modelActions.append(quantizeButton);
  const el = h(
    "section",
    { class: "settings", "data-testid": "settings" },
    h("h2", { text: "Settings" }),
    form.el,
    importBox,
    quantize.el,
  );

  /** Re-reads the model list, keeping the Model field's choice. */
  async function refreshModels(): Promise<void> {
    const models = await api.listModels();
    form.setModels(models, form.controls.model.value);
  }

  let deviceAsk = 0;
  /**
   * Lists the devices with the plan for the model and context the form shows (the
   * shell runs a child process for it: seconds, the first time). Only the latest
   * answer is shown: the model or context may change while one is asked.
   */
  async function refreshDevices(): Promise<void> {
    const ask = ++deviceAsk;
    const model = form.controls.model.value.trim();
    const ctx = Number(form.controls.ctx.value);
    try {
      const devices = await api.listDevices(model === "" ? null : model, Number.isInteger(ctx) && ctx > 0 ? ctx : null);
      if (ask === deviceAsk) form.setDevices(devices);
    } catch (e) {
      if (ask === deviceAsk) form.devicesUnavailable(toApiError(e).message);
    }
  }

  function refreshQuantizeButton(): void {
    quantizeButton.disabled = form.selectedModel() === undefined;
  }

  async function load(): Promise<void> {
    try {
      const [settings, models] = await Promise.all([api.getSettings(), api.listModels()]);
      form.setModels(models, settings.model);
      form.fill(settings);
      form.clearErrors();
      refreshQuantizeButton();
    } catch (e) {
      form.showErrors({}, `Could not read settings: ${toApiError(e).message}`);
      return;
    }
    // After the form is filled: it can be read and edited while the devices are listed.
    await refreshDevices();
  }

  async function doSave(): Promise<boolean> {
    const values = form.read();
    const errors = validateSettings(values);
    if (Object.keys(errors).length > 0) {
      form.showErrors(errors);
      note.textContent = "";
      return false;
    }
    form.clearErrors();
    save.disabled = true;
    note.textContent = "Saving…";
    try {
      const status = await api.saveSettings(values);
      store.dispatch({ type: "status", status });
      note.textContent = status.loading ? "Saved. Loading the model…" : "Saved.";
      return true;
    } catch (e) {
      const err = e instanceof ApiError ? e : toApiError(e);
      const field = settingName(err.details?.field);
      if (field) form.showErrors({ [field]: err.message });
      else form.showErrors({}, err.message);
      note.textContent = "";
      return false;
    } finally {
      save.disabled = false;
    }
  }

  async function doImport(): Promise<void> {
    const path = importPath.value.trim();
    importNote.hidden = true;
    if (path === "") {
      importNote.textContent = "Enter the full path of a .gguf file.";
      importNote.hidden = false;
      return;
    }
    importButton.disabled = true;
    chooseButton.disabled = true;
    importBar.value = 0;
    try {
      // A copy (another disk) shows its progress; a link on the same disk is instant.
      const model = await api.importModel(path, (p) => {
        importBar.hidden = false;
        importBar.value = p.totalBytes > 0 ? p.doneBytes / p.totalBytes : 0;
      });
      const models = await api.listModels();
      const byName = form.controls.model.value !== "" && models.some((m) => m.name === form.controls.model.value);
      form.setModels(models, byName ? model.name : model.path);
      importPath.value = "";
      note.textContent = `Imported ${model.name}. Save to use it.`;
    } catch (e) {
      importNote.textContent = toApiError(e).message;
      importNote.hidden = false;
    } finally {
      importButton.disabled = false;
      chooseButton.disabled = false;
      importBar.hidden = true;
    }
  }

  async function chooseAndImport(): Promise<void> {
    try {
      const chosen = await api.chooseModelFile();
      if (chosen === null) return;
      importPath.value = chosen;
      await doImport();
    } catch (e) {
      importNote.textContent = toApiError(e).message;
      importNote.hidden = false;
    }
  }

  on(form.el, "submit", (e) => {
    e.preventDefault();
    void doSave();
  });
  on(importButton, "click", () => void doImport());
  on(chooseButton, "click", () => void chooseAndImport());
  on(form.controls.model, "change", refreshQuantizeButton);
  // What fits on each device depends on the model and the context.
  on(form.controls.model, "change", () => void refreshDevices());
  on(form.controls.ctx, "change", () => void refreshDevices());
  on(quantizeButton, "click", () => {
    const model = form.selectedModel();
    if (model) void quantize.open(model);
  });
  on(importPath, "keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      void doImport();
    }
  });

  return { el, form, load, save: doSave };
}
