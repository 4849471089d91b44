// The top bar: tabs, what is running (backend, model, state, last speed), a
// backend switch, and a progress line for any wait longer than a second.
import { BACKENDS, toApiError, type Api, type AppStatus, type BackendKind } from "./api";
import { h, on } from "./dom";
import { formatTps } from "./format";
import { modelLine } from "./placement";
import type { AppState, Store, Tab } from "./state";

const LOAD_POLL_MS = 500;
/** Waits shorter than this show nothing: a flash of progress reads as jitter. */
export const WAIT_THRESHOLD_MS = 1000;

export type Phase = "loading" | "generating" | "ready" | "not-ready" | "starting";

export function phaseOf(status: AppStatus | null, streaming: boolean): Phase {
  if (!status) return "starting";
  if (status.loading) return "loading";
  if (status.generating || streaming) return "generating";
  return status.ready ? "ready" : "not-ready";
}

const PHASE_TEXT: Record<Phase, string> = {
  starting: "Starting…",
  loading: "Loading model…",
  generating: "Generating…",
  ready: "Ready",
  "not-ready": "Not ready",
};

/**
 * Counts overlapping waits and shows the indicator only while at least one
 * has lasted over the threshold.
 */
export class WaitTracker {
  private active = new Map<number, string>();
  private next = 0;
  constructor(
    private readonly show: (label: string | null) => void,
    private readonly threshold = WAIT_THRESHOLD_MS,
  ) {}

  begin(label: string): () => void {
    const id = this.next++;
    let ended = false;
    const timer = window.setTimeout(() => {
      if (ended) return;
      this.active.set(id, label);
      this.update();
    }, this.threshold);
    return () => {
      if (ended) return;
      ended = true;
      window.clearTimeout(timer);
      this.active.delete(id);
      this.update();
    };
  }

  async track<T>(label: string, pending: Promise<T>): Promise<T> {
    const end = this.begin(label);
    try {
      return await pending;
    } finally {
      end();
    }
  }

  private update(): void {
    const labels = [...this.active.values()];
    this.show(labels.length > 0 ? labels[labels.length - 1]! : null);
  }
}

/** The local API in a few words: how many requests run through it, or why it is off. */
export function apiSummary(s: AppStatus): string {
  if (s.api.url !== null) return `API · ${s.api.running} running`;
  return s.api.error !== null ? "API not serving" : "";
}

export interface TopBar {
  el: HTMLElement;
  waits: WaitTracker;
}

export function createTopBar(
  store: Store,
  api: Pick<Api, "appStatus" | "switchBackend">,
  selectTab: (tab: Tab) => void,
  // Whether the shell's status broadcast is heard: it then tells the load's progress
  // and end itself, and nothing here asks on a timer.
  statusPushed: () => boolean = () => false,
): TopBar {
  const labels: Record<Tab, string> = { chat: "Chat", models: "Get models", settings: "Settings", dashboard: "Dashboard" };
  const tabs = (["chat", "models", "settings", "dashboard"] as const).map((tab) =>
    h("button", {
      type: "button",
      class: "tab",
      role: "tab",
      "data-tab": tab,
      "data-testid": `tab-${tab}`,
      text: labels[tab],
    }),
  );
  const backend = h(
    "select",
    { class: "backend-switch", "aria-label": "Backend", "data-testid": "backend-switch" },
    ...BACKENDS.map((b) => h("option", { value: b.kind, text: b.label })),
  );
  const model = h("span", { class: "status-model", "data-testid": "status-model" });
  const phase = h("span", { class: "status-phase", "data-testid": "status-phase" });
  const speed = h("span", { class: "status-tps", "data-testid": "status-tps" });
  const reason = h("span", { class: "status-reason", "data-testid": "status-reason" });
  const apiLine = h("span", { class: "status-api", "data-testid": "status-api", hidden: true });
  const progressLabel = h("span", { class: "progress-label" });
  const progress = h(
    "div",
    { class: "progress", role: "progressbar", "aria-busy": "true", "data-testid": "progress", hidden: true },
    h("div", { class: "progress-bar" }),
    progressLabel,
  );
  const el = h(
    "header",
    { class: "topbar" },
    h("div", { class: "brand", text: "Hearth" }),
    h("nav", { class: "tabs", role: "tablist" }, ...tabs),
    h("div", { class: "status", "data-testid": "status" }, backend, model, phase, speed, apiLine, reason),
    progress,
  );

  const waits = new WaitTracker((label) => {
    progress.hidden = label === null;
    progressLabel.textContent = label ?? "";
  });

  let loadPoll: number | undefined;
  let endLoadWait: (() => void) | null = null;

  function pollWhileLoading(status: AppStatus): void {
    if (status.loading) {
      endLoadWait ??= waits.begin("Loading model…");
      if (loadPoll === undefined && !statusPushed()) {
        loadPoll = window.setTimeout(() => {
          loadPoll = undefined;
          api
            .appStatus()
            .then((s) => store.dispatch({ type: "status", status: s }))
            .catch(() => {
              // Try again on the next tick; the shell may be busy loading.
              pollWhileLoading(status);
            });
        }, LOAD_POLL_MS);
      }
    } else {
      endLoadWait?.();
      endLoadWait = null;
    }
  }

  function render(state: AppState): void {
    const s = state.status;
    const p = phaseOf(s, state.streaming !== null);
    phase.textContent = PHASE_TEXT[p];
    phase.dataset.phase = p;
    if (s) {
      backend.value = s.activeBackend;
      model.textContent = s.model ?? "no model";
      // Where it runs, on hover: the bar has no room for it, the dashboard shows it.
      model.title = modelLine(s) ?? "";
      speed.textContent = s.lastDecodeTps ? `last ${formatTps(s.lastDecodeTps)}` : "";
      apiLine.hidden = s.api.url === null;
      apiLine.textContent = apiSummary(s);
      apiLine.title = s.api.url ?? "";
      reason.textContent = !s.ready && !s.loading && s.reason ? s.reason : s.historyError ? `History: ${s.historyError}` : "";
    }
    backend.disabled = state.streaming !== null || (s?.loading ?? false);
    for (const t of tabs) t.setAttribute("aria-selected", String(t.dataset.tab === state.tab));
  }

  for (const t of tabs) on(t, "click", () => selectTab(t.dataset.tab as Tab));
  on(backend, "change", () => {
    const chosen = backend.value as BackendKind;
    void waits
      .track("Switching backend…", api.switchBackend(chosen))
      .then((status) => store.dispatch({ type: "status", status }))
      .catch((e: unknown) => {
        reason.textContent = toApiError(e).message;
        const current = store.get().status;
        if (current) backend.value = current.activeBackend;
      });
  });

  store.subscribe((state, action) => {
    if (action.type === "streamDelta") return;
    if (action.type === "status") pollWhileLoading(action.status);
    render(state);
  });
  render(store.get());
  return { el, waits };
}
