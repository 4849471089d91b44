// The Quantize… dialog: pick a type, see what it will make before anything is
// written (size, fit on this machine, free space, a warning when the source is
// already quantized), run it with a progress bar and a Cancel, and end with what
// the new file measured against its source.
import { toApiError, type Api, type ModelView, type QuantizePlanView, type QuantizeProgressView, type QuantizeResultView } from "../api";
import { h, on } from "../dom";

export type QuantizeApi = Pick<Api, "quantizeTypes" | "planQuantization" | "quantizeModel" | "cancelQuantization">;

export interface QuantizeDialog {
  el: HTMLDialogElement;
  /** Opens the dialog for `model`. */
  open(model: ModelView): Promise<void>;
}

/** Decimal megabytes or gigabytes, as disks are sold (and as the CLI prints them). */
export function diskBytes(bytes: number): string {
  const mb = bytes / 1e6;
  return mb >= 1000 ? `${(mb / 1000).toFixed(2)} GB` : `${mb.toFixed(1)} MB`;
}

export function planWords(p: QuantizePlanView): string {
  const from = [p.sourceType, diskBytes(p.sourceBytes)].filter(Boolean).join(", ");
  return (
    `${p.source} (${from}) → ${p.output}: about ${diskBytes(p.predictedBytes)} ` +
    `(${p.bitsPerWeight.toFixed(2)} bits per weight). On this machine it ${p.fit}. ` +
    `Free space: ${diskBytes(p.freeBytes)}.`
  );
}

export function progressWords(p: QuantizeProgressView, source: string): string {
  return p.phase === "quantizing"
    ? `Quantizing: tensor ${p.done} of ${p.total}`
    : `Measuring against ${source}: window ${p.done} of ${p.total}`;
}

export function createQuantizeDialog(api: QuantizeApi, onDone: (result: QuantizeResultView) => void): QuantizeDialog {
  const type = h("select", { "data-testid": "quantize-type", "aria-label": "Quantization type" });
  const plan = h("p", { class: "quantize-plan", "data-testid": "quantize-plan", role: "status" });
  const requantize = h("input", { type: "checkbox", "data-testid": "quantize-requantize" });
  const requantizeBox = h(
    "label",
    { class: "warning", hidden: true },
    requantize,
    " The source is already quantized: the errors of both quantizations add up. Quantize anyway.",
  );
  const bar = h("progress", { max: 1, value: 0, "data-testid": "quantize-progress", hidden: true });
  const progressText = h("div", { class: "help", "data-testid": "quantize-progress-text" });
  const result = h("p", { class: "quantize-result", "data-testid": "quantize-result", hidden: true });
  const error = h("div", { class: "field-error", role: "alert", "data-testid": "quantize-error", hidden: true });
  const start = h("button", { type: "button", class: "primary", "data-testid": "quantize-start", text: "Quantize" });
  const cancel = h("button", { type: "button", "data-testid": "quantize-cancel", text: "Cancel", hidden: true });
  const close = h("button", { type: "button", "data-testid": "quantize-close", text: "Close" });
  const title = h("h3", { text: "Quantize" });
  const el = h(
    "dialog",
    { class: "quantize-dialog", "data-testid": "quantize-dialog" },
    title,
    h("div", { class: "field" }, h("label", { text: "Type" }), type),
    plan,
    requantizeBox,
    bar,
    progressText,
    result,
    error,
    h("div", { class: "form-actions" }, start, cancel, close),
  );

  let model: ModelView | null = null;
  let current: QuantizePlanView | null = null;
  let running = false;
  let planSeq = 0;

  function showError(message: string | null): void {
    error.textContent = message ?? "";
    error.hidden = message === null;
  }

  function refreshStart(): void {
    start.disabled =
      running || current === null || !current.enoughSpace || (current.requantize && !requantize.checked);
  }

  async function predict(): Promise<void> {
    if (!model) return;
    const seq = ++planSeq;
    current = null;
    plan.textContent = "Predicting the size…";
    showError(null);
    refreshStart();
    try {
      const p = await api.planQuantization(model.name, type.value);
      if (seq !== planSeq) return;
      current = p;
      plan.textContent = planWords(p);
      requantizeBox.hidden = !p.requantize;
      if (!p.enoughSpace) showError(`Not enough free space for ${p.output}: free some space first.`);
    } catch (e) {
      if (seq !== planSeq) return;
      plan.textContent = "";
      showError(toApiError(e).message);
    }
    refreshStart();
  }

  async function run(): Promise<void> {
    if (!model || !current) return;
    running = true;
    refreshStart();
    type.disabled = true;
    close.disabled = true;
    cancel.hidden = false;
    result.hidden = true;
    showError(null);
    bar.hidden = false;
    bar.value = 0;
    const source = current.sourceType ?? model.name;
    try {
      const done = await api.quantizeModel(model.name, type.value, requantize.checked, (p) => {
        bar.max = Math.max(p.total, 1);
        bar.value = p.done;
        progressText.textContent = progressWords(p, source);
      });
      result.textContent = done.summary;
      result.hidden = false;
      progressText.textContent = `Done: ${done.model.name}`;
      onDone(done);
    } catch (e) {
      const err = toApiError(e);
      showError(err.code === "cancelled" ? "Cancelled: nothing was kept." : err.message);
      progressText.textContent = "";
      bar.hidden = true;
    } finally {
      running = false;
      type.disabled = false;
      close.disabled = false;
      cancel.hidden = true;
      refreshStart();
    }
  }

  on(type, "change", () => void predict());
  on(requantize, "change", refreshStart);
  on(start, "click", () => void run());
  on(cancel, "click", () => void api.cancelQuantization());
  on(close, "click", () => {
    if (typeof el.close === "function") el.close();
    else el.removeAttribute("open");
  });
  // Escape must not hide a running job's only Cancel button.
  on(el, "cancel", (e) => {
    if (running) e.preventDefault();
  });

  return {
    el,
    async open(m) {
      model = m;
      title.textContent = `Quantize ${m.name}`;
      requantize.checked = false;
      requantizeBox.hidden = true;
      result.hidden = true;
      bar.hidden = true;
      progressText.textContent = "";
      showError(null);
      if (type.options.length === 0) {
        try {
          const types = await api.quantizeTypes();
          type.replaceChildren(...types.map((t) => h("option", { value: t, text: t })));
        } catch (e) {
          showError(toApiError(e).message);
        }
      }
      if (!el.open) {
        if (typeof el.showModal === "function") el.showModal();
        else el.setAttribute("open", "");
      }
      await predict();
    },
  };
}
