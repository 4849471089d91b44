import { afterEach, describe, expect, it, vi } from "vitest";
import type { HardwareView } from "../src/api";
import { createDashboard, meanTps, WINDOW_MS } from "../src/dashboard/dashboard";
import { TimeSeries } from "../src/dashboard/ringBuffer";
import { status } from "./helpers";

const MIN = 60_000;

describe("time series ring buffer", () => {
  it("keeps only the last N minutes", () => {
    const s = new TimeSeries(5 * MIN, 1000);
    for (let t = 0; t <= 10 * MIN; t += 1000) s.push(t, t / 1000);
    const points = s.points();
    expect(points[0]!.t).toBe(5 * MIN);
    expect(points[points.length - 1]!.t).toBe(10 * MIN);
    expect(points).toHaveLength(301);
    expect(s.size).toBe(301);
  });

  it("never grows past its capacity, keeping the newest samples in order", () => {
    const s = new TimeSeries(60 * MIN, 10);
    for (let i = 0; i < 25; i++) s.push(i, i);
    expect(s.size).toBe(10);
    expect(s.points().map((p) => p.v)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
  });

  it("windows relative to a given now", () => {
    const s = new TimeSeries(5 * MIN, 100);
    s.push(0, 1);
    s.push(4 * MIN, 2);
    expect(s.points(6 * MIN).map((p) => p.v)).toEqual([2]);
  });

  it("starts over if the clock goes backwards", () => {
    const s = new TimeSeries(5 * MIN, 100);
    s.push(10_000, 1);
    s.push(20_000, 2);
    s.push(5_000, 3);
    expect(s.points().map((p) => p.v)).toEqual([3]);
  });
});

describe("dashboard", () => {
  afterEach(() => vi.useRealTimers());

  const hw: HardwareView = {
    cpuPercent: 37.4,
    ramUsedBytes: 8 * 1024 ** 3,
    ramTotalBytes: 32 * 1024 ** 3,
    gpus: [{ name: "RTX 4090", utilPercent: 91, vramUsedBytes: 6 * 1024 ** 3, vramTotalBytes: 24 * 1024 ** 3 }],
    modelMemoryBytes: 5 * 1024 ** 3,
  };

  it("polls every second only while visible and shows the numbers", async () => {
    vi.useFakeTimers();
    const api = {
      hardwareSnapshot: vi.fn(async () => hw),
      recentPerformance: vi.fn(async () => [
        { timestamp: 1, backend: "embedded", model: "q", decodeTps: 40, ttftMs: 100 },
        { timestamp: 2, backend: "embedded", model: "q", decodeTps: 50, ttftMs: 90 },
      ]),
    };
    const d = createDashboard(api);
    document.body.replaceChildren(d.el);
    expect(api.hardwareSnapshot).not.toHaveBeenCalled();
    d.setVisible(true);
    await vi.advanceTimersByTimeAsync(3000);
    expect(api.hardwareSnapshot).toHaveBeenCalledTimes(4);
    const text = (id: string) => d.el.querySelector(`[data-testid="${id}"]`)!.textContent;
    expect(text("dash-cpu")).toBe("37%");
    expect(text("dash-ram")).toBe("8.0 GiB / 32.0 GiB");
    expect(text("dash-tps")).toBe("50.0 tok/s (mean 45.0 tok/s)");
    expect(text("dash-model-memory")).toBe("5.0 GiB");
    d.setVisible(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(api.hardwareSnapshot).toHaveBeenCalledTimes(4);
  });

  it("shows where the local API serves and how many requests run, or why it does not", () => {
    const d = createDashboard({ hardwareSnapshot: vi.fn(async () => hw), recentPerformance: vi.fn(async () => []) });
    const text = (id: string) => d.el.querySelector(`[data-testid="${id}"]`)!.textContent;
    expect(text("dash-api")).toBe("Off (turn it on in Settings)");
    d.showStatus(status({ api: { url: "http://127.0.0.1:8080/v1", tokenRequired: true, running: 2, error: null } }));
    expect(text("dash-api")).toBe("2 requests running");
    expect(text("dash-api-detail")).toBe("http://127.0.0.1:8080/v1 · token required");
    d.showStatus(status({ api: { url: "http://127.0.0.1:8080/v1", tokenRequired: false, running: 1, error: null } }));
    expect(text("dash-api")).toBe("1 request running");
    d.showStatus(status({ api: { url: null, tokenRequired: false, running: 0, error: "port 8080 cannot be used" } }));
    expect(text("dash-api")).toBe("Not serving");
    expect(text("dash-api-detail")).toBe("port 8080 cannot be used");
  });

  it("shows the loaded model, where it runs and why it is not where asked", () => {
    const d = createDashboard({ hardwareSnapshot: vi.fn(async () => hw), recentPerformance: vi.fn(async () => []) });
    const el = (id: string) => d.el.querySelector<HTMLElement>(`[data-testid="${id}"]`)!;
    d.showStatus(
      status({
        model: "SmolLM2-135M-Instruct-Q4_1",
        placement: { device: "Vulkan0", gpuLayers: 31, layersTotal: 31, summary: "on Vulkan0: 31/31 layers", note: null },
      }),
    );
    expect(el("dash-model").textContent).toBe("SmolLM2-135M-Instruct-Q4_1 on Vulkan0: 31/31 layers");
    expect(el("dash-placement-note").hidden).toBe(true);
    const note = "CUDA0 had no room for the 31 layers asked for; the model runs on the CPU";
    d.showStatus(
      status({
        model: "SmolLM2-135M-Instruct-Q4_1",
        placement: { device: "CPU", gpuLayers: 0, layersTotal: 31, summary: "on CPU", note },
      }),
    );
    expect(el("dash-model").textContent).toBe("SmolLM2-135M-Instruct-Q4_1 on CPU");
    expect(el("dash-placement-note").hidden).toBe(false);
    expect(el("dash-placement-note").textContent).toBe(note);
    d.showStatus(status({ model: null, placement: null }));
    expect(el("dash-model").textContent).toBe("");
    expect(el("dash-placement-note").hidden).toBe(true);
  });

  it("averages only real speeds", () => {
    expect(meanTps([])).toBeNull();
    expect(
      meanTps([
        { timestamp: 1, backend: "a", model: "m", decodeTps: 10, ttftMs: 1 },
        { timestamp: 2, backend: "a", model: "m", decodeTps: 0, ttftMs: 1 },
        { timestamp: 3, backend: "a", model: "m", decodeTps: 30, ttftMs: 1 },
      ]),
    ).toBe(20);
    expect(WINDOW_MS).toBe(5 * MIN);
  });
});

describe("line chart", () => {
  it("breaks the line where polling paused and scales to the window", async () => {
    const { drawLineChart } = await import("../src/dashboard/lineChart");
    const ops: string[] = [];
    const ctx = new Proxy(
      {},
      {
        get: (_t, name: string) =>
          ["moveTo", "lineTo"].includes(name)
            ? (x: number, y: number) => ops.push(`${name} ${Math.round(x)},${Math.round(y)}`)
            : () => {},
        set: () => true,
      },
    );
    const canvas = document.createElement("canvas");
    canvas.getContext = (() => ctx) as unknown as typeof canvas.getContext;
    Object.defineProperty(canvas, "clientWidth", { value: 100 });
    Object.defineProperty(canvas, "clientHeight", { value: 52 });
    drawLineChart(
      canvas,
      [{ points: [{ t: 0, v: 0 }, { t: 1000, v: 100 }, { t: 9000, v: 50 }, { t: 10_000, v: 50 }], color: "red" }],
      { windowMs: 10_000, now: 10_000, yMax: 100 },
    );
    // Three grid lines, then the series: a gap over 3 s starts a new segment.
    expect(ops.slice(6)).toEqual(["moveTo 0,51", "lineTo 10,1", "moveTo 90,26", "lineTo 100,26"]);
  });
});
