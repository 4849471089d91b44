import { afterEach, describe, expect, it, vi } from "vitest";
import { createStore } from "../src/state";
import { createTopBar, phaseOf, WaitTracker } from "../src/topbar";
import { status } from "./helpers";

afterEach(() => vi.useRealTimers());

describe("wait indicator", () => {
  it("shows only for waits longer than a second", async () => {
    vi.useFakeTimers();
    const show = vi.fn();
    const waits = new WaitTracker(show);
    const quick = waits.begin("quick");
    await vi.advanceTimersByTimeAsync(900);
    quick();
    await vi.advanceTimersByTimeAsync(500);
    expect(show).not.toHaveBeenCalledWith("quick");
    const slow = waits.begin("slow");
    await vi.advanceTimersByTimeAsync(1001);
    expect(show).toHaveBeenLastCalledWith("slow");
    slow();
    expect(show).toHaveBeenLastCalledWith(null);
  });
});

describe("top bar", () => {
  it("derives the phase", () => {
    expect(phaseOf(null, false)).toBe("starting");
    expect(phaseOf(status({ loading: true }), false)).toBe("loading");
    expect(phaseOf(status(), true)).toBe("generating");
    expect(phaseOf(status({ ready: false }), false)).toBe("not-ready");
    expect(phaseOf(status(), false)).toBe("ready");
  });

  it("shows the local API's running requests only while it serves", () => {
    const store = createStore();
    const bar = createTopBar(store, { appStatus: vi.fn(), switchBackend: vi.fn() }, vi.fn());
    const line = bar.el.querySelector<HTMLElement>('[data-testid="status-api"]')!;
    store.dispatch({ type: "status", status: status() });
    expect(line.hidden).toBe(true);
    store.dispatch({ type: "status", status: status({ api: { url: "http://127.0.0.1:8080/v1", tokenRequired: false, running: 3, error: null } }) });
    expect(line.hidden).toBe(false);
    expect(line.textContent).toBe("API · 3 running");
    expect(line.title).toBe("http://127.0.0.1:8080/v1");
  });

  it("polls appStatus while the model loads and shows progress after a second", async () => {
    vi.useFakeTimers();
    const store = createStore();
    const answers = [
      status({ loading: true }),
      status({ loading: true }),
      status({ loading: true }),
      status({ loading: false, lastDecodeTps: 41.5 }),
    ];
    const api = { appStatus: vi.fn(async () => answers.shift() ?? status()), switchBackend: vi.fn() };
    const bar = createTopBar(store, api, vi.fn());
    document.body.replaceChildren(bar.el);
    const q = (id: string) => bar.el.querySelector<HTMLElement>(`[data-testid="${id}"]`)!;
    store.dispatch({ type: "status", status: status({ loading: true }) });
    expect(q("status-phase").textContent).toBe("Loading model…");
    expect(q("progress").hidden).toBe(true);
    await vi.advanceTimersByTimeAsync(1100);
    expect(q("progress").hidden).toBe(false);
    await vi.advanceTimersByTimeAsync(1000);
    // Polled every 500 ms: loading, loading, loading, ready.
    expect(api.appStatus).toHaveBeenCalledTimes(4);
    expect(q("status-phase").textContent).toBe("Ready");
    expect(q("status-tps").textContent).toBe("last 41.5 tok/s");
    expect(q("progress").hidden).toBe(true);
    await vi.advanceTimersByTimeAsync(3000);
    expect(api.appStatus).toHaveBeenCalledTimes(4);
  });

  it("does not poll while the model loads when the shell pushes the status", async () => {
    vi.useFakeTimers();
    const store = createStore();
    const api = { appStatus: vi.fn(async () => status()), switchBackend: vi.fn() };
    const bar = createTopBar(store, api, vi.fn(), () => true);
    document.body.replaceChildren(bar.el);
    const q = (id: string) => bar.el.querySelector<HTMLElement>(`[data-testid="${id}"]`)!;
    store.dispatch({ type: "status", status: status({ loading: true }) });
    await vi.advanceTimersByTimeAsync(3000);
    expect(api.appStatus).not.toHaveBeenCalled();
    expect(q("status-phase").textContent).toBe("Loading model…");
    // The pushed status ends the wait.
    store.dispatch({ type: "status", status: status({ loading: false }) });
    expect(q("status-phase").textContent).toBe("Ready");
    expect(q("progress").hidden).toBe(true);
  });

  it("has the nav tabs end-to-end tests use", () => {
    const select = vi.fn();
    const bar = createTopBar(createStore(), { appStatus: vi.fn(), switchBackend: vi.fn() }, select);
    for (const tab of ["chat", "settings", "dashboard"]) {
      bar.el.querySelector<HTMLButtonElement>(`[data-testid="tab-${tab}"]`)!.click();
    }
    expect(select.mock.calls.map((c) => c[0])).toEqual(["chat", "settings", "dashboard"]);
  });
});
