import type { AppStatus } from "../src/api";
import type { FrameScheduler } from "../src/chat/coalescer";

/** A frame scheduler the test advances by hand. */
export function fakeFrames(): FrameScheduler & { tick(): void; pending: number } {
  let callbacks = new Map<number, () => void>();
  let next = 1;
  return {
    request(cb) {
      callbacks.set(next, cb);
      return next++;
    },
    cancel(handle) {
      callbacks.delete(handle);
    },
    tick() {
      const due = callbacks;
      callbacks = new Map();
      for (const cb of due.values()) cb();
    },
    get pending() {
      return callbacks.size;
    },
  };
}


export function status(overrides: Partial<AppStatus> = {}): AppStatus {
  return {
    activeBackend: "embedded",
    model: "qwen2.5-0.5b-instruct-q4_k_m",
    ready: true,
    reason: null,
    loading: false,
    generating: false,
    historyError: null,
    lastDecodeTps: null,
    dbPath: "/tmp/hearth.db",
    session: null,
    api: { url: null, tokenRequired: false, running: 0, error: null },
    ...overrides,
  };
}
