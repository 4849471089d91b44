import { describe, expect, it, vi } from "vitest";
import { ApiError, type ModelView, type QuantizePlanView, type QuantizeProgressView, type QuantizeResultView } from "../src/api";
import { createQuantizeDialog, diskBytes, planWords, progressWords } from "../src/settings/quantize";

const source: ModelView = {
  name: "gemma-3-270m-F16.gguf",
  path: "/models/gemma-3-270m-F16.gguf",
  sizeBytes: 542_833_344,
  architecture: "gemma3",
  quantization: "F16",
  contextLength: 32768,
  hasChatTemplate: false,
  source: "hearth",
  fit: "cpu_only: no GPU",
  measured: null,
};

const plan = (over: Partial<QuantizePlanView> = {}): QuantizePlanView => ({
  source: source.name,
  target: "Q4_K_M",
  sourceType: "F16",
  output: "gemma-3-270m-Q4_K_M.gguf",
  sourceBytes: 542_833_344,
  predictedBytes: 253_113_024,
  bitsPerWeight: 7.49,
  fit: "runs on the CPU",
  freeBytes: 10_000_000_000,
  enoughSpace: true,
  requantize: false,
  ...over,
});

const made: QuantizeResultView = {
  model: { ...source, name: "gemma-3-270m-Q4_K_M.gguf", path: "/models/gemma-3-270m-Q4_K_M.gguf", quantization: "Q4_K_M" },
  summary: "Q4_K_M: 2.1× smaller than F16 (253.1 MB), top token same as F16 in 95% of positions, perplexity +0.2%",
  quantizeMs: 4200,
  measureMs: 30000,
};

function setup(planned: QuantizePlanView = plan()) {
  let progress: ((p: QuantizeProgressView) => void) | null = null;
  let finish: ((r: QuantizeResultView) => void) | null = null;
  let fail: ((e: unknown) => void) | null = null;
  const api = {
    quantizeTypes: vi.fn(async () => ["F16", "Q8_0", "Q4_K_M"]),
    planQuantization: vi.fn(async (_model: string, target: string) => ({ ...planned, target })),
    quantizeModel: vi.fn(
      (_m: string, _t: string, _allow: boolean, onProgress: (p: QuantizeProgressView) => void) =>
        new Promise<QuantizeResultView>((resolve, reject) => {
          progress = onProgress;
          finish = resolve;
          fail = reject;
        }),
    ),
    cancelQuantization: vi.fn(async () => {
      fail?.(new ApiError("cancelled", "cancelled: nothing was written"));
    }),
  };
  const onDone = vi.fn();
  const dialog = createQuantizeDialog(api, onDone);
  document.body.replaceChildren(dialog.el);
  const q = <T extends HTMLElement = HTMLElement>(id: string) => dialog.el.querySelector<T>(`[data-testid="quantize-${id}"]`)!;
  return {
    api,
    dialog,
    onDone,
    q,
    progress: (p: QuantizeProgressView) => progress!(p),
    finish: (r: QuantizeResultView) => finish!(r),
  };
}

describe("quantize words", () => {
  it("says sizes as disks are sold and the plan in one sentence", () => {
    expect(diskBytes(253_113_024)).toBe("253.1 MB");
    expect(diskBytes(2_500_000_000)).toBe("2.50 GB");
    expect(planWords(plan())).toBe(
      "gemma-3-270m-F16.gguf (F16, 542.8 MB) → gemma-3-270m-Q4_K_M.gguf: about 253.1 MB (7.49 bits per weight). On this machine it runs on the CPU. Free space: 10.00 GB.",
    );
    expect(progressWords({ phase: "quantizing", done: 3, total: 236 }, "F16")).toBe("Quantizing: tensor 3 of 236");
    expect(progressWords({ phase: "measuring", done: 2, total: 8 }, "F16")).toBe("Measuring against F16: window 2 of 8");
  });
});

describe("quantize dialog", () => {
  it("shows the prediction for the chosen type, runs with progress and ends with the measured result", async () => {
    const { api, dialog, onDone, q, progress, finish } = setup();
    await dialog.open(source);
    expect(api.planQuantization).toHaveBeenCalledWith(source.name, "F16");
    expect(q("plan").textContent).toContain("about 253.1 MB");
    q<HTMLSelectElement>("type").value = "Q4_K_M";
    q("type").dispatchEvent(new Event("change"));
    await vi.waitFor(() => expect(api.planQuantization).toHaveBeenLastCalledWith(source.name, "Q4_K_M"));
    await vi.waitFor(() => expect(q<HTMLButtonElement>("start").disabled).toBe(false));

    q("start").click();
    await vi.waitFor(() => expect(api.quantizeModel).toHaveBeenCalledWith(source.name, "Q4_K_M", false, expect.any(Function)));
    expect(q<HTMLButtonElement>("start").disabled).toBe(true);
    expect(q("cancel").hidden).toBe(false);
    progress({ phase: "quantizing", done: 118, total: 236 });
    expect(q<HTMLProgressElement>("progress").value).toBe(118);
    expect(q<HTMLProgressElement>("progress").max).toBe(236);
    expect(q("progress-text").textContent).toBe("Quantizing: tensor 118 of 236");
    progress({ phase: "measuring", done: 3, total: 8 });
    expect(q("progress-text").textContent).toBe("Measuring against F16: window 3 of 8");

    finish(made);
    await vi.waitFor(() => expect(q("result").hidden).toBe(false));
    expect(q("result").textContent).toBe(made.summary);
    expect(onDone).toHaveBeenCalledWith(made);
    expect(q("cancel").hidden).toBe(true);
  });

  it("needs consent to requantize an already quantized source", async () => {
    const { dialog, q } = setup(plan({ requantize: true, sourceType: "Q4_K_M" }));
    await dialog.open(source);
    expect(q<HTMLButtonElement>("start").disabled).toBe(true);
    expect(q("requantize").closest("label")!.hidden).toBe(false);
    q<HTMLInputElement>("requantize").click();
    expect(q<HTMLButtonElement>("start").disabled).toBe(false);
  });

  it("refuses to start without the free space, and says so", async () => {
    const { dialog, q } = setup(plan({ enoughSpace: false, freeBytes: 1_000_000 }));
    await dialog.open(source);
    expect(q<HTMLButtonElement>("start").disabled).toBe(true);
    expect(q("error").hidden).toBe(false);
    expect(q("error").textContent).toMatch(/Not enough free space/);
  });

  it("cancel stops the job and says nothing was kept", async () => {
    const { api, dialog, q } = setup();
    await dialog.open(source);
    q("start").click();
    await vi.waitFor(() => expect(api.quantizeModel).toHaveBeenCalled());
    q("cancel").click();
    await vi.waitFor(() => expect(q("error").hidden).toBe(false));
    expect(api.cancelQuantization).toHaveBeenCalled();
    expect(q("error").textContent).toBe("Cancelled: nothing was kept.");
    expect(q("progress").hidden).toBe(true);
    expect(q<HTMLButtonElement>("start").disabled).toBe(false);
  });

  it("shows a planning error (a corrupt source) instead of a plan", async () => {
    const { api, dialog, q } = setup();
    api.planQuantization.mockRejectedValueOnce(new ApiError("quantize_failed", "cannot quantize x.gguf: cut short"));
    await dialog.open(source);
    expect(q("error").textContent).toBe("cannot quantize x.gguf: cut short");
    expect(q<HTMLButtonElement>("start").disabled).toBe(true);
  });
});
