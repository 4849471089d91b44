import { describe, expect, it, vi } from "vitest";
import type { ChatEvent, TurnView } from "../src/api";
import { ApiError } from "../src/api";
import { createChatController } from "../src/chat/controller";
import { createChatView } from "../src/chat/chatView";
import { actionFor } from "../src/chat/errors";
import { formatBadge } from "../src/chat/messageView";
import { createStore, localIds } from "../src/state";
import { fakeFrames, status } from "./helpers";

const turnView = (over: Partial<TurnView> = {}): TurnView => ({
  sessionId: "s1",
  backend: "embedded",
  model: "qwen",
  text: "Hi! **Done.**",
  decodeTps: 38.25,
  ttftMs: 140,
  completionTokens: 5,
  finishReason: "stop",
  retries: 0,
  fallbacks: 0,
  userMessageId: 10,
  replyMessageId: 11,
  ...over,
});

/** A fake api whose turn the test drives: emit events, then finish or fail. */
function fakeApi() {
  let emit: (e: ChatEvent) => void = () => {};
  let finish: (t: TurnView) => void = () => {};
  let fail: (e: unknown) => void = () => {};
  const turn = (onEvent: (e: ChatEvent) => void) =>
    new Promise<TurnView>((resolve, reject) => {
      emit = onEvent;
      finish = resolve;
      fail = reject;
    });
  const api = {
    sendMessage: vi.fn((_text: string, onEvent: (e: ChatEvent) => void) => turn(onEvent)),
    regenerate: vi.fn((onEvent: (e: ChatEvent) => void) => turn(onEvent)),
    editAndResend: vi.fn((_id: number, _text: string, onEvent: (e: ChatEvent) => void) => turn(onEvent)),
    stopGeneration: vi.fn(() => Promise.resolve()),
    appStatus: vi.fn(),
  };
  return {
    api,
    emit: (e: ChatEvent) => emit(e),
    finish: (t: TurnView) => finish(t),
    fail: (e: unknown) => fail(e),
  };
}

function setup() {
  const store = createStore();
  const fake = fakeApi();
  const frames = fakeFrames();
  const afterTurn = vi.fn();
  const controller = createChatController({ store, api: fake.api, nextLocalId: localIds(), afterTurn });
  const view = createChatView({ store, controller, openSettings: vi.fn(), scheduler: frames });
  document.body.replaceChildren(view.el);
  const q = <T extends Element = HTMLElement>(testid: string) =>
    view.el.querySelector<T & Element>(`[data-testid="${testid}"]`);
  return { store, fake, frames, afterTurn, controller, view, q };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

describe("chat view + controller", () => {
  it("Enter sends, Shift+Enter does not", () => {
    const { fake, q } = setup();
    const composer = q<HTMLTextAreaElement>("composer")!;
    composer.value = "line one";
    composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true, bubbles: true }));
    expect(fake.api.sendMessage).not.toHaveBeenCalled();
    composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(fake.api.sendMessage).toHaveBeenCalledWith("line one", expect.any(Function));
    expect(composer.value).toBe("");
  });

  it("does not send while a model loads; the text waits in the composer", () => {
    const { store, fake, q } = setup();
    const composer = q<HTMLTextAreaElement>("composer")!;
    store.dispatch({ type: "status", status: status({ loading: true }) });
    expect(q<HTMLButtonElement>("send")!.disabled).toBe(true);
    composer.value = "hello";
    composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(fake.api.sendMessage).not.toHaveBeenCalled();
    expect(composer.value).toBe("hello");
    store.dispatch({ type: "status", status: status({ loading: false }) });
    expect(q<HTMLButtonElement>("send")!.disabled).toBe(false);
    composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(fake.api.sendMessage).toHaveBeenCalledWith("hello", expect.any(Function));
  });

  it("streams into one element, appending once per frame, without touching earlier messages", async () => {
    const { store, fake, frames, q, view, afterTurn } = setup();
    store.dispatch({
      type: "sessionOpened",
      id: "s1",
      messages: [
        { id: 1, role: "user", content: "earlier", incomplete: false },
        { id: 2, role: "assistant", content: "earlier reply", incomplete: false },
      ],
    });
    const earlierNodes = [...view.el.querySelectorAll('[data-testid="message"]')];
    expect(earlierNodes).toHaveLength(2);

    q<HTMLTextAreaElement>("composer")!.value = "hello";
    q<HTMLButtonElement>("send")!.click();
    expect(q("stop")!.hidden).toBe(false);
    expect(q<HTMLButtonElement>("send")!.disabled).toBe(true);

    fake.emit({ kind: "started", backend: "embedded", model: "qwen" });
    const streaming = q("reply-streaming")!;
    expect(streaming).not.toBeNull();
    const body = streaming.querySelector(".message-body")!;
    const append = vi.spyOn(Text.prototype, "appendData");

    fake.emit({ kind: "delta", text: "Hi", tokens: 1 });
    fake.emit({ kind: "delta", text: "! ", tokens: 1 });
    expect(append).not.toHaveBeenCalled();
    frames.tick();
    expect(append).toHaveBeenCalledTimes(1);
    expect(body.textContent).toBe("Hi! ");
    fake.emit({ kind: "delta", text: "**Done.**", tokens: 1 });
    frames.tick();
    expect(append).toHaveBeenCalledTimes(2);
    append.mockRestore();

    fake.emit({ kind: "done", decodeTps: 38.25, ttftMs: 140, completionTokens: 5, finishReason: "stop" });
    fake.finish(turnView());
    await flush();

    expect(q("reply-streaming")).toBeNull();
    const messages = [...view.el.querySelectorAll<HTMLElement>('[data-testid="message"]')];
    expect(messages.map((m) => m.dataset.role)).toEqual(["user", "assistant", "user", "assistant"]);
    // The first two are the very same nodes: the thread was not re-rendered.
    expect(messages[0]).toBe(earlierNodes[0]);
    expect(messages[1]).toBe(earlierNodes[1]);
    const reply = messages[3]!;
    expect(reply.querySelector("strong")?.textContent).toBe("Done.");
    expect(reply.querySelector('[data-testid="badge"]')?.textContent).toBe("embedded · qwen · 38.3 tok/s · TTFT 140 ms");
    // The ids the turn returns replace the local ones, so edit & resend can name them.
    expect(messages[2]!.dataset.id).toBe("10");
    expect(reply.dataset.id).toBe("11");
    expect(afterTurn).toHaveBeenCalledTimes(1);
    expect(q("stop")!.hidden).toBe(true);
  });

  it("stop asks the shell once and the reply is marked incomplete", async () => {
    const { fake, frames, q, controller, store } = setup();
    controller.send("tell me a story");
    fake.emit({ kind: "delta", text: "Once upon a time", tokens: 1 });
    frames.tick();
    q<HTMLButtonElement>("stop")!.click();
    q<HTMLButtonElement>("stop")!.click();
    expect(fake.api.stopGeneration).toHaveBeenCalledTimes(1);
    expect(store.get().streaming?.stopping).toBe(true);
    fake.finish(turnView({ text: "Once upon a time", finishReason: "cancelled" }));
    await flush();
    const reply = document.querySelector<HTMLElement>('[data-testid="message"][data-role="assistant"]')!;
    expect(reply.classList.contains("incomplete")).toBe(true);
    expect(reply.querySelector('[data-testid="incomplete"]')).not.toBeNull();
  });

  it("shows an error with what to do, keeping the partial reply", async () => {
    const { fake, frames, q } = setup();
    q<HTMLTextAreaElement>("composer")!.value = "hi";
    q<HTMLButtonElement>("send")!.click();
    fake.emit({ kind: "delta", text: "partial", tokens: 1 });
    frames.tick();
    fake.fail(new ApiError("model_not_found", "Model file missing: choose another in Settings (/models/x.gguf)"));
    await flush();
    const card = q("chat-error")!;
    // The shell's words, shown once; the code picks the button.
    expect(card.textContent).toBe("Model file missing: choose another in Settings (/models/x.gguf)Open Settings");
    expect(card.querySelector('[data-action="open-settings"]')).not.toBeNull();
    const reply = document.querySelector<HTMLElement>('[data-role="assistant"]')!;
    expect(reply.textContent).toContain("partial");
    expect(reply.classList.contains("incomplete")).toBe(true);
  });

  it("edit & resend truncates after the edited message and calls the shell with its id", () => {
    const { store, fake, view } = setup();
    store.dispatch({
      type: "sessionOpened",
      id: "s1",
      messages: [
        { id: 1, role: "user", content: "first", incomplete: false },
        { id: 2, role: "assistant", content: "a", incomplete: false },
        { id: 3, role: "user", content: "second", incomplete: false },
        { id: 4, role: "assistant", content: "b", incomplete: false },
      ],
    });
    view.el.querySelector<HTMLButtonElement>('[data-id="1"] [data-action="edit"]')!.click();
    const area = view.el.querySelector<HTMLTextAreaElement>('[data-testid="edit-input"]')!;
    expect(area.value).toBe("first");
    area.value = "first, edited";
    view.el.querySelector<HTMLButtonElement>('[data-testid="edit-send"]')!.click();
    expect(fake.api.editAndResend).toHaveBeenCalledWith(1, "first, edited", expect.any(Function));
    const ids = [...view.el.querySelectorAll<HTMLElement>('[data-testid="message"]')].map((m) => m.dataset.id);
    expect(ids).toEqual(["1"]);
    expect(view.el.querySelector('[data-id="1"] .message-body')?.textContent).toBe("first, edited");
    expect(view.el.querySelector('[data-testid="reply-streaming"]')).not.toBeNull();
  });

  it("regenerate drops the last reply and streams a new one", () => {
    const { store, fake, view } = setup();
    store.dispatch({
      type: "sessionOpened",
      id: "s1",
      messages: [
        { id: 1, role: "user", content: "q", incomplete: false },
        { id: 2, role: "assistant", content: "a", incomplete: false },
      ],
    });
    view.el.querySelector<HTMLButtonElement>('[data-testid="regenerate"]')!.click();
    expect(fake.api.regenerate).toHaveBeenCalledTimes(1);
    expect(view.el.querySelectorAll('[data-testid="message"]')).toHaveLength(1);
  });

  it("takes the ids a regenerated turn returns: the question was written again, under a new id", async () => {
    const { store, fake, controller } = setup();
    store.dispatch({
      type: "sessionOpened",
      id: "s1",
      messages: [
        { id: 1, role: "user", content: "q", incomplete: false },
        { id: 2, role: "assistant", content: "a", incomplete: false },
      ],
    });
    expect(controller.regenerate()).toBe(true);
    fake.emit({ kind: "delta", text: "b", tokens: 1 });
    fake.finish(turnView({ text: "b", userMessageId: 3, replyMessageId: 4 }));
    await flush();
    expect(store.get().messages.map((m) => [m.id, m.role])).toEqual([
      [3, "user"],
      [4, "assistant"],
    ]);
    // With history off the shell stores nothing: the local ids stay.
    expect(controller.send("again")).toBe(true);
    fake.finish(turnView({ text: "c", userMessageId: null, replyMessageId: null }));
    await flush();
    expect(store.get().messages.slice(2).every((m) => m.id < 0)).toBe(true);
  });

  it("opens a long session showing only the newest page", () => {
    const { store, view } = setup();
    const messages = Array.from({ length: 400 }, (_, i) => ({
      id: i + 1,
      role: (i % 2 === 0 ? "user" : "assistant") as "user" | "assistant",
      content: `message ${i + 1}`,
      incomplete: false,
    }));
    store.dispatch({ type: "sessionOpened", id: "long", messages });
    const shown = view.el.querySelectorAll<HTMLElement>('[data-testid="message"]');
    expect(shown.length).toBe(50);
    expect(shown[shown.length - 1]!.dataset.id).toBe("400");
    view.el.querySelector<HTMLButtonElement>(".show-earlier")!.click();
    expect(view.el.querySelectorAll('[data-testid="message"]').length).toBe(100);
  });
});

describe("badges and advice", () => {
  it("formats the reply badge and leaves out unknown parts", () => {
    expect(formatBadge({ backend: "ollama", model: "llama3.2", decodeTps: 123.4, ttftMs: 1500 })).toBe(
      "ollama · llama3.2 · 123 tok/s · TTFT 1.5 s",
    );
    expect(formatBadge({ backend: "vllm", model: null })).toBe("vllm");
  });

  it("picks the card's button by code", () => {
    expect(actionFor("model_not_found")).toBe("settings");
    expect(actionFor("context_length_exceeded")).toBe("settings");
    expect(actionFor("model_loading")).toBeNull();
    expect(actionFor("decode_failed")).toBe("retry");
    expect(actionFor("backend_crashed")).toBe("retry");
    // The IPC's own failure is no shell code, and a retry may get through.
    expect(actionFor("ipc")).toBe("retry");
  });
});
