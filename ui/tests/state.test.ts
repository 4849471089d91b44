import { describe, expect, it, vi } from "vitest";
import { createStore, initialState, reduce, type Action, type AppState, type TurnResult } from "../src/state";

const turn = (over: Partial<TurnResult> = {}): TurnResult => ({
  sessionId: "s1",
  backend: "embedded",
  model: "qwen",
  text: "Hello there",
  decodeTps: 42,
  ttftMs: 120,
  finishReason: "stop",
  ...over,
});

function run(actions: Action[], from: AppState = initialState()): AppState {
  return actions.reduce(reduce, from);
}

describe("state: streaming reply lifecycle", () => {
  it("start → started → deltas → done appends one assistant message", () => {
    const s = run([
      { type: "userMessage", id: -1, content: "hi" },
      { type: "streamStart", mode: "send" },
      { type: "streamStarted", backend: "embedded", model: "qwen" },
      { type: "streamDelta", text: "Hello", tokens: 1, at: 0 },
      { type: "streamDelta", text: " there", tokens: 1, at: 0 },
    ]);
    expect(s.streaming).toMatchObject({ backend: "embedded", model: "qwen", text: "Hello there", stopping: false });
    const done = reduce(s, { type: "streamDone", id: -2, turn: turn() });
    expect(done.streaming).toBeNull();
    expect(done.currentSession).toBe("s1");
    expect(done.messages.map((m) => [m.id, m.role, m.content])).toEqual([
      [-1, "user", "hi"],
      [-2, "assistant", "Hello there"],
    ]);
    expect(done.messages[1]).toMatchObject({ decodeTps: 42, ttftMs: 120, incomplete: false, backend: "embedded" });
  });

  it("a stopped reply is kept and marked incomplete", () => {
    const s = run([
      { type: "streamStart", mode: "send" },
      { type: "streamDelta", text: "partial", tokens: 1, at: 0 },
      { type: "streamStopRequested" },
    ]);
    expect(s.streaming?.stopping).toBe(true);
    const done = reduce(s, { type: "streamDone", id: -5, turn: turn({ text: "", finishReason: "cancelled" }) });
    expect(done.messages).toHaveLength(1);
    expect(done.messages[0]).toMatchObject({ content: "partial", incomplete: true, finishReason: "cancelled" });
  });

  it("a reply cut at max tokens is incomplete too", () => {
    const s = run([{ type: "streamStart", mode: "send" }]);
    const done = reduce(s, { type: "streamDone", id: -1, turn: turn({ finishReason: "length" }) });
    expect(done.messages[0]?.incomplete).toBe(true);
  });

  it("an error after some text keeps that text as an incomplete reply and records the error", () => {
    const s = run([
      { type: "streamStart", mode: "send" },
      { type: "streamDelta", text: "Once upon", tokens: 1, at: 0 },
      { type: "streamError", id: -3, error: { code: "backend_crashed", message: "worker died" } },
    ]);
    expect(s.streaming).toBeNull();
    expect(s.lastError).toEqual({ code: "backend_crashed", message: "worker died" });
    expect(s.messages).toEqual([
      expect.objectContaining({ id: -3, content: "Once upon", incomplete: true, finishReason: "error" }),
    ]);
  });

  it("an error before any text adds no message", () => {
    const s = run([
      { type: "streamStart", mode: "send" },
      { type: "streamError", id: -3, error: { code: "model_not_found", message: "missing" } },
    ]);
    expect(s.messages).toEqual([]);
    expect(s.lastError?.code).toBe("model_not_found");
  });

  it("ignores stream events when nothing is streaming, and a second start while streaming", () => {
    const idle = initialState();
    expect(reduce(idle, { type: "streamDelta", text: "x", tokens: 1, at: 0 })).toBe(idle);
    expect(reduce(idle, { type: "streamStopRequested" })).toBe(idle);
    expect(reduce(idle, { type: "streamDone", id: -1, turn: turn() })).toBe(idle);
    const streaming = reduce(idle, { type: "streamStart", mode: "send" });
    expect(reduce(streaming, { type: "streamStart", mode: "regenerate" })).toBe(streaming);
  });

  it("a new turn clears the previous error", () => {
    const failed = run([
      { type: "streamStart", mode: "send" },
      { type: "streamError", id: -1, error: { code: "busy", message: "busy" } },
    ]);
    expect(reduce(failed, { type: "streamStart", mode: "regenerate" }).lastError).toBeNull();
  });
});

describe("state: sessions and messages", () => {
  const opened = reduce(initialState(), {
    type: "sessionOpened",
    id: "a",
    messages: [
      { id: 1, role: "user", content: "q1", incomplete: false },
      { id: 2, role: "assistant", content: "a1", incomplete: false },
      { id: 3, role: "user", content: "q2", incomplete: false },
      { id: 4, role: "assistant", content: "a2", incomplete: false },
    ],
  });

  it("opening a session replaces the thread", () => {
    expect(opened.currentSession).toBe("a");
    expect(opened.messages.map((m) => m.id)).toEqual([1, 2, 3, 4]);
  });

  it("truncates after a message (regenerate, edit)", () => {
    expect(reduce(opened, { type: "messagesTruncated", afterId: 2 }).messages.map((m) => m.id)).toEqual([1, 2]);
    expect(reduce(opened, { type: "messagesTruncated", afterId: 99 })).toBe(opened);
  });

  it("edits a message's text in place", () => {
    const s = reduce(opened, { type: "messageEdited", id: 3, content: "q2 (edited)" });
    expect(s.messages[2]?.content).toBe("q2 (edited)");
    expect(s.messages[0]).toBe(opened.messages[0]);
  });

  it("maps local ids to stored ids", () => {
    const s = run([
      { type: "userMessage", id: -1, content: "q3" },
      { type: "streamStart", mode: "send" },
      { type: "streamDone", id: -2, turn: turn() },
      { type: "idsSynced", ids: [[-1, 5], [-2, 6]] },
    ], opened);
    expect(s.messages.map((m) => m.id)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("deleting the open session clears the thread; another one leaves it", () => {
    const withList = reduce(opened, {
      type: "sessions",
      sessions: [
        { id: "a", title: "A", updatedAt: 2, messageCount: 4, preview: "" },
        { id: "b", title: "B", updatedAt: 1, messageCount: 0, preview: "" },
      ],
    });
    const other = reduce(withList, { type: "sessionDeleted", id: "b" });
    expect(other.sessions.map((s) => s.id)).toEqual(["a"]);
    expect(other.messages).toHaveLength(4);
    const current = reduce(withList, { type: "sessionDeleted", id: "a" });
    expect(current.currentSession).toBeNull();
    expect(current.messages).toEqual([]);
  });

  it("renames a session in the list", () => {
    const s = run([
      { type: "sessions", sessions: [{ id: "a", title: "", updatedAt: 1, messageCount: 0, preview: "" }] },
      { type: "sessionRenamed", id: "a", title: "Trip plans" },
    ]);
    expect(s.sessions[0]?.title).toBe("Trip plans");
  });
});

describe("store", () => {
  it("notifies listeners with the action, and not for no-op actions", () => {
    const store = createStore();
    const listener = vi.fn();
    const unsubscribe = store.subscribe(listener);
    store.dispatch({ type: "streamDelta", text: "ignored", tokens: 1, at: 0 });
    expect(listener).not.toHaveBeenCalled();
    store.dispatch({ type: "streamStart", mode: "send" });
    expect(listener).toHaveBeenCalledTimes(1);
    expect(listener.mock.calls[0]?.[1]).toEqual({ type: "streamStart", mode: "send" });
    unsubscribe();
    store.dispatch({ type: "streamDelta", text: "x", tokens: 1, at: 0 });
    expect(listener).toHaveBeenCalledTimes(1);
    expect(store.get().streaming?.text).toBe("x");
  });
});
