// The hardware dashboard: CPU, RAM, GPU utilisation and VRAM over the last
// five minutes (polled every second, only while the tab is shown and the
// window visible), the loaded model's memory and where it runs, and recent
// replies' speed.
import { toApiError, type Api, type AppStatus, type HardwareView, type PerfView } from "../api";
import { h } from "../dom";
import { formatBytes, formatMs, formatPercent, formatTps } from "../format";
import { modelLine } from "../placement";
import { drawLineChart, type ChartSeries } from "./lineChart";
import { TimeSeries } from "./ringBuffer";

export const WINDOW_MS = 5 * 60 * 1000;
const POLL_MS = 1000;
const PERF_EVERY_MS = 10_000;
/** Room for the window at one sample a second, plus slack for timer jitter. */
const CAPACITY = WINDOW_MS / POLL_MS + 30;
const GPU_COLORS = ["--chart-2", "--chart-3", "--chart-4", "--chart-5"];

type DashboardApi = Pick<Api, "hardwareSnapshot" | "recentPerformance">;

export interface Dashboard {
  el: HTMLElement;
  setVisible(visible: boolean): void;
  refreshPerformance(): void;
  /** Shows what the app status says of the loaded model (where it runs) and of the
   * local API (where it serves, what runs). */
  showStatus(status: AppStatus): void;
}

interface Card {
  el: HTMLElement;
  value: HTMLElement;
  canvas: HTMLCanvasElement;
}

function card(title: string, testid: string): Card {
  const value = h("div", { class: "dash-value", "data-testid": testid, text: "–" });
  const canvas = h("canvas", { class: "chart", "aria-hidden": "true", "data-testid": `${testid}-chart` });
  const el = h("div", { class: "dash-card" }, h("div", { class: "dash-title", text: title }), value, canvas);
  return { el, value, canvas };
}

export function meanTps(rows: PerfView[]): number | null {
  const speeds = rows.map((r) => r.decodeTps).filter((t): t is number => typeof t === "number" && t > 0);
  if (speeds.length === 0) return null;
  return speeds.reduce((sum, t) => sum + t, 0) / speeds.length;
}

export function createDashboard(api: DashboardApi, now: () => number = Date.now): Dashboard {
  const cpu = card("CPU", "dash-cpu");
  const ram = card("RAM", "dash-ram");
  const gpu = card("GPU utilisation", "dash-gpu");
  const vram = card("VRAM", "dash-vram");
  const modelMemory = h("div", { class: "dash-value", "data-testid": "dash-model-memory", text: "–" });
  const modelPlace = h("div", { class: "dash-detail", "data-testid": "dash-model" });
  const placementNote = h("div", { class: "dash-detail warning", "data-testid": "dash-placement-note", hidden: true });
  const tps = h("div", { class: "dash-value", "data-testid": "dash-tps", text: "–" });
  const perfList = h("ol", { class: "perf-list", "data-testid": "dash-perf" });
  const apiValue = h("div", { class: "dash-value", "data-testid": "dash-api", text: "Off (turn it on in Settings)" });
  const apiDetail = h("div", { class: "dash-detail", "data-testid": "dash-api-detail" });
  const error = h("div", { class: "form-error", role: "status", hidden: true });
  const el = h(
    "section",
    { class: "dashboard", "data-testid": "dashboard" },
    h("h2", { text: "Hardware" }),
    error,
    h("div", { class: "dash-grid" }, cpu.el, ram.el, gpu.el, vram.el),
    h(
      "div",
      { class: "dash-grid" },
      h(
        "div",
        { class: "dash-card" },
        h("div", { class: "dash-title", text: "Loaded model" }),
        modelMemory,
        modelPlace,
        placementNote,
      ),
      h(
        "div",
        { class: "dash-card wide" },
        h("div", { class: "dash-title", text: "Recent replies (decode speed)" }),
        tps,
        perfList,
      ),
      h("div", { class: "dash-card" }, h("div", { class: "dash-title", text: "Local API" }), apiValue, apiDetail),
    ),
  );

  function showStatus(status: AppStatus): void {
    modelPlace.textContent = modelLine(status) ?? "";
    const note = status.placement?.note ?? null;
    placementNote.textContent = note ?? "";
    placementNote.hidden = note === null;
    const api = status.api;
    if (api.url !== null) {
      apiValue.textContent = `${api.running} ${api.running === 1 ? "request" : "requests"} running`;
      apiDetail.textContent = `${api.url}${api.tokenRequired ? " · token required" : ""}`;
    } else {
      apiValue.textContent = api.error !== null ? "Not serving" : "Off (turn it on in Settings)";
      apiDetail.textContent = api.error ?? "";
    }
  }

  const cpuSeries = new TimeSeries(WINDOW_MS, CAPACITY);
  const ramSeries = new TimeSeries(WINDOW_MS, CAPACITY);
  const gpuUtil: TimeSeries[] = [];
  const gpuVram: TimeSeries[] = [];
  let timer: number | undefined;
  let lastPerf = 0;
  let shown = false;
  let inFlight = false;

  const seriesFor = (list: TimeSeries[], i: number): TimeSeries => {
    while (list.length <= i) list.push(new TimeSeries(WINDOW_MS, CAPACITY));
    return list[i]!;
  };

  function record(hw: HardwareView, t: number): void {
    cpuSeries.push(t, hw.cpuPercent);
    ramSeries.push(t, hw.ramTotalBytes > 0 ? (hw.ramUsedBytes / hw.ramTotalBytes) * 100 : 0);
    hw.gpus.forEach((g, i) => {
      if (g.utilPercent !== null && g.utilPercent !== undefined) seriesFor(gpuUtil, i).push(t, g.utilPercent);
      seriesFor(gpuVram, i).push(t, g.vramTotalBytes > 0 ? (g.vramUsedBytes / g.vramTotalBytes) * 100 : 0);
    });
  }

  function render(hw: HardwareView, t: number): void {
    cpu.value.textContent = formatPercent(hw.cpuPercent);
    ram.value.textContent = `${formatBytes(hw.ramUsedBytes)} / ${formatBytes(hw.ramTotalBytes)}`;
    if (hw.gpus.length === 0) {
      gpu.value.textContent = "No GPU detected";
      vram.value.textContent = "–";
    } else {
      gpu.value.textContent = hw.gpus.map((g) => `${g.name}: ${formatPercent(g.utilPercent)}`).join(", ");
      vram.value.textContent = hw.gpus
        .map((g) => `${formatBytes(g.vramUsedBytes)} / ${formatBytes(g.vramTotalBytes)}`)
        .join(", ");
    }
    modelMemory.textContent = hw.modelMemoryBytes ? formatBytes(hw.modelMemoryBytes) : "No model loaded";
    const opts = { windowMs: WINDOW_MS, now: t, yMax: 100 };
    const gpuLines = (list: TimeSeries[]): ChartSeries[] =>
      list.map((s, i) => ({ points: s.points(t), color: GPU_COLORS[i % GPU_COLORS.length]! }));
    // How many readings the chart holds: lets tests (and curious users) see it is live.
    cpu.canvas.dataset["samples"] = String(cpuSeries.points(t).length);
    drawLineChart(cpu.canvas, [{ points: cpuSeries.points(t), color: "--chart-1" }], opts);
    drawLineChart(ram.canvas, [{ points: ramSeries.points(t), color: "--chart-1" }], opts);
    drawLineChart(gpu.canvas, gpuLines(gpuUtil), opts);
    drawLineChart(vram.canvas, gpuLines(gpuVram), opts);
  }

  async function poll(): Promise<void> {
    if (inFlight) return; // a slow snapshot must not pile up calls
    inFlight = true;
    try {
      const hw = await api.hardwareSnapshot();
      const t = now();
      record(hw, t);
      if (shown) render(hw, t);
      error.hidden = true;
    } catch (e) {
      error.textContent = `Hardware readings unavailable: ${toApiError(e).message}`;
      error.hidden = false;
    } finally {
      inFlight = false;
    }
    if (now() - lastPerf >= PERF_EVERY_MS) refreshPerformance();
  }

  function refreshPerformance(): void {
    lastPerf = now();
    api
      .recentPerformance(20)
      .then((unordered) => {
        const rows = [...unordered].sort((a, b) => b.timestamp - a.timestamp);
        const mean = meanTps(rows);
        const latest = rows[0];
        tps.textContent = latest ? `${formatTps(latest.decodeTps)} (mean ${formatTps(mean)})` : "No replies yet";
        perfList.replaceChildren(
          ...rows.slice(0, 10).map((r) =>
            h("li", {
              text: `${new Date(r.timestamp).toLocaleTimeString()} · ${r.backend} · ${r.model} · ${formatTps(
                r.decodeTps,
              )} · TTFT ${formatMs(r.ttftMs)}`,
            }),
          ),
        );
      })
      .catch(() => {
        tps.textContent = "–";
      });
  }

  function setVisible(visible: boolean): void {
    shown = visible;
    window.clearInterval(timer);
    timer = undefined;
    if (!visible) return;
    void poll();
    refreshPerformance();
    timer = window.setInterval(() => void poll(), POLL_MS);
  }

  return { el, setVisible, refreshPerformance, showStatus };
}
