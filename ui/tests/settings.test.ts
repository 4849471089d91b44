import { describe, expect, it, vi } from "vitest";
import { ApiError, toApiError, type DeviceOption, type ModelView, type SettingsView } from "../src/api";
import { createSettingsPanel } from "../src/settings/panel";
import { FORM_FIELDS, SETTING_NAMES, formField, helpOf, settingName, validateSettings } from "../src/settings/schema";
import { createStore } from "../src/state";
import { cpuDevice, device, status } from "./helpers";

const settings = (over: Partial<SettingsView> = {}): SettingsView => ({
  backend: "embedded",
  model: "/models/qwen.gguf",
  ctx: 4096,
  gpuLayers: "auto",
  device: "auto",
  ollamaUrl: "http://127.0.0.1:11434",
  ollamaModel: null,
  vllmUrl: null,
  vllmModel: null,
  temperature: 0.7,
  topP: 0.95,
  maxTokens: 512,
  systemPrompt: null,
  apiEnabled: false,
  apiPort: 8080,
  apiToken: null,
  parallel: "auto",
  ...over,
});

const models: ModelView[] = [
  {
    name: "qwen2.5-0.5b-instruct",
    path: "/models/qwen.gguf",
    sizeBytes: 491_400_032,
    architecture: "qwen2",
    quantization: "Q4_K_M",
    contextLength: 32768,
    hasChatTemplate: true,
    source: "hearth",
    fit: "fits fully on GPU (25/25 layers)",
    measured: {
      perplexity: 22.12,
      tokensScored: 7168,
      bitsPerWeight: 4.87,
      ramAfterLoadBytes: 300_000_000,
      decodeTps: 95.3,
      referenceName: "qwen-F16.gguf",
      referencePerplexity: 22.04,
      klMean: 0.0048,
      klP99: 0.04,
      sameTopPercent: 95.5,
      measuredAt: 1_790_000_000_000,
    },
  },
  {
    name: "tiny-base",
    path: "/models/tiny.gguf",
    sizeBytes: 20_000_000,
    architecture: "llama",
    quantization: "Q8_0",
    contextLength: null,
    hasChatTemplate: false,
    source: "hearth",
    fit: null,
    measured: null,
  },
];

/** The CPU, an RTX 4090 that auto picks and a smaller GPU the model half fits on. */
const devices: DeviceOption[] = [
  cpuDevice(),
  device(),
  device({
    value: "Vulkan1",
    name: "Vulkan1",
    description: "AMD Radeon RX 6600",
    memoryFreeBytes: 3 * 1024 ** 3,
    auto: false,
    verdict: "partial_offload",
    nGpuLayers: 11,
    reason: "11 of 19 layers fit",
  }),
];

function setup(
  saveImpl?: (s: SettingsView) => Promise<ReturnType<typeof status>>,
  listDevicesImpl: (model: string | null, ctx: number | null) => Promise<DeviceOption[]> = async () => devices,
  current: SettingsView = settings(),
) {
  const store = createStore();
  const api = {
    getSettings: vi.fn(async () => current),
    listModels: vi.fn(async () => models),
    listDevices: vi.fn(listDevicesImpl),
    saveSettings: vi.fn(saveImpl ?? (async () => status({ loading: true }))),
    importModel: vi.fn(async (_path: string, onProgress: (p: { doneBytes: number; totalBytes: number }) => void) => {
      onProgress({ doneBytes: 50, totalBytes: 100 });
      return models[1]!;
    }),
    chooseModelFile: vi.fn(async (): Promise<string | null> => "/media/usb/picked.gguf"),
    quantizeTypes: vi.fn(async () => ["F16", "Q8_0", "Q4_K_M"]),
    planQuantization: vi.fn(),
    quantizeModel: vi.fn(),
    cancelQuantization: vi.fn(async () => {}),
  };
  const panel = createSettingsPanel(store, api);
  document.body.replaceChildren(panel.el);
  const field = <T extends HTMLElement = HTMLInputElement>(name: string) =>
    panel.el.querySelector<T>(`[data-testid="setting-${name}"]`)!;
  const errorOf = (name: string) => panel.el.querySelector<HTMLElement>(`[data-testid="setting-${name}-error"]`)!;
  return { store, api, panel, field, errorOf };
}

describe("settings validation", () => {
  it("shows every field of the view once, as the shell's table places it", () => {
    expect([...SETTING_NAMES].sort()).toEqual(Object.keys(settings()).sort());
    expect(new Set(SETTING_NAMES).size).toBe(SETTING_NAMES.length);
    // A backend's fields are in its section of the registry; the rest belong to none.
    expect(formField("ollamaUrl").owner).toBe("ollama");
    expect(formField("gpuLayers").group).toBe("embedded");
    expect(formField("temperature").owner).toBeNull();
    // Replies at once is the engine's, shown with the local API; auto's limit is the shell's.
    expect(formField("parallel")).toMatchObject({ owner: "embedded", group: "api" });
    expect(helpOf(formField("parallel"))).toMatch(/at most 4\)/);
    expect(FORM_FIELDS.every((f) => f.label !== "")).toBe(true);
  });

  it("accepts good settings", () => {
    expect(validateSettings(settings())).toEqual({});
  });

  it("names each bad field", () => {
    const errors = validateSettings(
      settings({ ctx: 12.5, gpuLayers: "lots", temperature: 3, topP: 0, maxTokens: 0, backend: "ollama", ollamaUrl: "ftp://x" }),
    );
    expect(Object.keys(errors).sort()).toEqual(["ctx", "gpuLayers", "maxTokens", "ollamaModel", "ollamaUrl", "temperature", "topP"]);
  });

  it("checks the local API's port, token and replies at once", () => {
    expect(validateSettings(settings({ apiEnabled: true, apiPort: 0, apiToken: "abc", parallel: "8" }))).toEqual({});
    const errors = validateSettings(settings({ apiPort: 70000, apiToken: "two words", parallel: "65" }));
    expect(Object.keys(errors).sort()).toEqual(["apiPort", "apiToken", "parallel"]);
    expect(errors.parallel).toMatch(/from 1 to 64/);
    expect(Object.keys(validateSettings(settings({ apiPort: 1.5, parallel: "many" }))).sort()).toEqual(["apiPort", "parallel"]);
  });

  it("wants the device as one word", () => {
    expect(validateSettings(settings({ device: "Vulkan0" }))).toEqual({});
    expect(validateSettings(settings({ device: "cpu" }))).toEqual({});
    for (const bad of ["", "  ", "vulkan 0"]) {
      expect(validateSettings(settings({ device: bad })).device).toBe("Use auto, cpu or a device `hearth hw` lists, e.g. vulkan0.");
    }
  });

  it("takes the field from the error's `field`, never from its words", () => {
    expect(settingName("ollamaUrl")).toBe("ollamaUrl");
    expect(settingName("topP")).toBe("topP");
    // A field the form does not show, or none: the error goes under the form.
    expect(settingName("retry.retries")).toBeNull();
    expect(settingName(null)).toBeNull();
    expect(settingName(undefined)).toBeNull();
  });
});

describe("settings form", () => {
  it("has a control for every SettingsView field, filled from the shell", async () => {
    const { panel, field } = setup();
    await panel.load();
    for (const name of Object.keys(settings())) expect(field(name), name).not.toBeNull();
    expect(field("ctx").value).toBe("4096");
    expect(field<HTMLSelectElement>("model").value).toBe("/models/qwen.gguf");
    const info = panel.el.querySelector('[data-testid="model-info"]')!.textContent!;
    expect(info).toContain("Q4_K_M");
    expect(info).toContain("32,768 ctx");
    expect(info).toContain("469 MiB");
    expect(info).toContain("fits fully on GPU");
    const measured = panel.el.querySelector('[data-testid="model-measured"]')!.textContent!;
    expect(measured).toBe(
      "Measured: perplexity 22.12 on 7,168 tokens · vs qwen-F16.gguf: KL 0.0048, same top token 95.5% · 4.87 bits/weight · 286 MiB RAM · 95.3 tok/s",
    );
  });

  it("reads the local API's switch, port, token and replies at once back", async () => {
    const { panel, field, api } = setup();
    await panel.load();
    expect(field("apiEnabled").checked).toBe(false);
    expect(field("apiPort").value).toBe("8080");
    expect(field("parallel").value).toBe("auto");
    field("apiEnabled").checked = true;
    field("apiPort").value = "1337";
    field("apiToken").value = "  s3cret ";
    field("parallel").value = "AUTO";
    expect(await panel.save()).toBe(true);
    expect(api.saveSettings).toHaveBeenCalledWith(
      expect.objectContaining({ apiEnabled: true, apiPort: 1337, apiToken: "s3cret", parallel: "auto" }),
    );
  });

  it("puts a taken port under the port field", async () => {
    const message = "`apiPort`: port 8080 cannot be used for the local API (Address in use): another program may hold it; choose another port";
    const shellError = { code: "invalid_settings", message, field: "apiPort", needed: null, limit: null, retryAfterSecs: null, backend: null };
    const { panel, errorOf } = setup(async () => {
      throw toApiError(shellError);
    });
    await panel.load();
    expect(await panel.save()).toBe(false);
    expect(errorOf("apiPort").hidden).toBe(false);
    expect(errorOf("apiPort").textContent).toContain("choose another port");
  });

  it("shows no measurement for a model never measured", async () => {
    const { panel, field } = setup();
    await panel.load();
    const select = field<HTMLSelectElement>("model");
    select.value = "/models/tiny.gguf";
    select.dispatchEvent(new Event("change"));
    expect(panel.el.querySelector('[data-testid="model-measured"]')).toBeNull();
  });

  it("shows validation errors next to their fields and does not save", async () => {
    const { panel, field, errorOf, api } = setup();
    await panel.load();
    field("temperature").value = "5";
    field("gpuLayers").value = "many";
    expect(await panel.save()).toBe(false);
    expect(api.saveSettings).not.toHaveBeenCalled();
    expect(errorOf("temperature").hidden).toBe(false);
    expect(errorOf("temperature").textContent).toMatch(/between 0 and 2/);
    expect(errorOf("gpuLayers").hidden).toBe(false);
    expect(errorOf("ctx").hidden).toBe(true);
    expect(field("temperature").getAttribute("aria-invalid")).toBe("true");
    // Fixing the fields clears the errors on the next save.
    field("temperature").value = "0.5";
    field("gpuLayers").value = "20";
    expect(await panel.save()).toBe(true);
    expect(errorOf("temperature").hidden).toBe(true);
    expect(api.saveSettings).toHaveBeenCalledWith(expect.objectContaining({ temperature: 0.5, gpuLayers: "20" }));
  });

  it("puts a server validation error next to the field it names", async () => {
    const message = "`maxTokens`: 100000 exceeds the context (4096)";
    const shellError = { code: "invalid_settings", message, field: "maxTokens", needed: null, limit: null, retryAfterSecs: null, backend: null };
    const { panel, errorOf } = setup(async () => {
      throw toApiError(shellError);
    });
    await panel.load();
    expect(await panel.save()).toBe(false);
    expect(errorOf("maxTokens").hidden).toBe(false);
    expect(errorOf("maxTokens").textContent).toContain("exceeds the context");
  });

  it("puts an error without a field under the form, whatever its words mention", async () => {
    const { panel, errorOf } = setup(async () => {
      throw new ApiError("history_error", "the maxTokens setting was saved but the database is read-only");
    });
    await panel.load();
    expect(await panel.save()).toBe(false);
    expect(errorOf("maxTokens").hidden).toBe(true);
    expect(panel.el.textContent).toContain("database is read-only");
  });

  it("applies the returned status on save (no restart)", async () => {
    const { panel, store } = setup();
    await panel.load();
    expect(await panel.save()).toBe(true);
    expect(store.get().status?.loading).toBe(true);
    expect(panel.el.querySelector('[data-testid="settings-note"]')!.textContent).toMatch(/Loading/);
  });

  it("imports a GGUF by path and selects it", async () => {
    const { panel, api, field } = setup();
    await panel.load();
    const path = panel.el.querySelector<HTMLInputElement>('[data-testid="import-path"]')!;
    path.value = "/home/me/tiny.gguf";
    panel.el.querySelector<HTMLButtonElement>('[data-testid="import-model"]')!.click();
    await new Promise((r) => setTimeout(r, 0));
    expect(api.importModel).toHaveBeenCalledWith("/home/me/tiny.gguf", expect.any(Function));
    expect(field<HTMLSelectElement>("model").value).toBe("/models/tiny.gguf");
    expect(panel.el.querySelector('[data-testid="model-info"]')!.textContent).toMatch(/No chat template/);
    expect(panel.el.querySelector<HTMLProgressElement>('[data-testid="import-progress"]')!.hidden).toBe(true);
  });

  it("imports the file chosen in the system's dialog, and nothing when it is cancelled", async () => {
    const { panel, api } = setup();
    await panel.load();
    const choose = panel.el.querySelector<HTMLButtonElement>('[data-testid="import-choose"]')!;
    choose.click();
    await vi.waitFor(() => expect(api.importModel).toHaveBeenCalledWith("/media/usb/picked.gguf", expect.any(Function)));
    api.chooseModelFile.mockResolvedValueOnce(null);
    api.importModel.mockClear();
    choose.click();
    await new Promise((r) => setTimeout(r, 0));
    expect(api.importModel).not.toHaveBeenCalled();
  });
});

describe("device picker", () => {
  const options = (select: HTMLSelectElement) => [...select.options].map((o) => [o.value, o.text]);

  it("lists auto, the CPU and each GPU with its free memory and what fits there", async () => {
    const { panel, field, api } = setup();
    await panel.load();
    expect(api.listDevices).toHaveBeenCalledWith("/models/qwen.gguf", 4096);
    const select = field<HTMLSelectElement>("device");
    expect(select.tagName).toBe("SELECT");
    expect(options(select)).toEqual([
      ["auto", "Auto (uses Vulkan0)"],
      ["cpu", "CPU"],
      ["Vulkan0", "Vulkan0 · NVIDIA GeForce RTX 4090 · 21.3 GiB free · fits: 19/19 layers"],
      ["Vulkan1", "Vulkan1 · AMD Radeon RX 6600 · 3.0 GiB free · partly fits: 11/19 layers"],
    ]);
    expect(select.value).toBe("auto");
    expect(select.options[3]!.title).toBe("11 of 19 layers fit");
    expect(panel.el.querySelector<HTMLElement>('[data-testid="device-note"]')!.hidden).toBe(true);
  });

  it("saves the device chosen", async () => {
    const { panel, field, api } = setup();
    await panel.load();
    field<HTMLSelectElement>("device").value = "Vulkan1";
    expect(await panel.save()).toBe(true);
    expect(api.saveSettings).toHaveBeenCalledWith(expect.objectContaining({ device: "Vulkan1" }));
  });

  it("selects the device the settings name in any case, and keeps one that is gone", async () => {
    const lower = setup(undefined, undefined, settings({ device: "vulkan0" }));
    await lower.panel.load();
    expect(lower.field<HTMLSelectElement>("device").value).toBe("Vulkan0");

    const gone = setup(undefined, undefined, settings({ device: "CUDA0" }));
    await gone.panel.load();
    const select = gone.field<HTMLSelectElement>("device");
    expect(select.value).toBe("CUDA0");
    expect(select.selectedOptions[0]!.text).toBe("CUDA0 (not found)");
    expect(await gone.panel.save()).toBe(true);
    expect(gone.api.saveSettings).toHaveBeenCalledWith(expect.objectContaining({ device: "CUDA0" }));
  });

  it("asks again for another model or context, and shows only the latest answer", async () => {
    let answer: (d: DeviceOption[]) => void = () => {};
    const { panel, field, api } = setup();
    await panel.load();
    api.listDevices.mockImplementationOnce(() => new Promise((resolve) => (answer = resolve)));
    const model = field<HTMLSelectElement>("model");
    model.value = "/models/tiny.gguf";
    model.dispatchEvent(new Event("change"));
    expect(api.listDevices).toHaveBeenLastCalledWith("/models/tiny.gguf", 4096);
    // The context changes before the first answer: its answer is the one shown.
    api.listDevices.mockResolvedValueOnce([cpuDevice({ auto: true })]);
    field("ctx").value = "8192";
    field("ctx").dispatchEvent(new Event("change"));
    expect(api.listDevices).toHaveBeenLastCalledWith("/models/tiny.gguf", 8192);
    await vi.waitFor(() => expect(field<HTMLSelectElement>("device").options[0]!.text).toBe("Auto (uses CPU)"));
    answer(devices);
    await new Promise((r) => setTimeout(r, 0));
    expect(options(field<HTMLSelectElement>("device"))).toEqual([
      ["auto", "Auto (uses CPU)"],
      ["cpu", "CPU"],
    ]);
  });

  it("falls back to typing the device, with the reason, when the devices cannot be listed", async () => {
    const failure = "listing the devices failed (exit status: 1): ggml_vulkan: device lost. Type the device instead";
    const { panel, field, api } = setup(undefined, async () => {
      throw new ApiError("devices_unavailable", failure);
    }, settings({ device: "Vulkan0" }));
    await panel.load();
    const typed = field("device");
    expect(typed.tagName).toBe("INPUT");
    expect(typed.value).toBe("Vulkan0");
    expect(typed.getAttribute("aria-describedby")).toBe("setting-device-error");
    const note = panel.el.querySelector<HTMLElement>('[data-testid="device-note"]')!;
    expect(note.hidden).toBe(false);
    expect(note.textContent).toBe(`Could not list the devices: ${failure}`);

    typed.value = "vulkan 1";
    expect(await panel.save()).toBe(false);
    expect(panel.el.querySelector('[data-testid="setting-device-error"]')!.textContent).toMatch(/e\.g\. vulkan0/);
    typed.value = " CUDA0 ";
    expect(await panel.save()).toBe(true);
    expect(api.saveSettings).toHaveBeenLastCalledWith(expect.objectContaining({ device: "CUDA0" }));

    // Listed on the next try: the picker is back, on the device the settings name.
    api.listDevices.mockResolvedValueOnce(devices);
    await panel.load();
    const picker = field<HTMLSelectElement>("device");
    expect(picker.tagName).toBe("SELECT");
    expect(picker.value).toBe("Vulkan0");
    expect(note.hidden).toBe(true);
  });
});
