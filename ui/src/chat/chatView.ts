// The chat panel: thread, composer, stop / regenerate. It patches the DOM per
// store action: a delta appends text (once per frame), a finished reply
// replaces only the streaming element, and opening a session is the one time
// the thread is built, newest messages first in pages.
import { h, on } from "../dom";
import type { Action, AppState, ChatMessage, Store } from "../state";
import { createDeltaCoalescer, type DeltaCoalescer, type FrameScheduler } from "./coalescer";
import type { ChatController } from "./controller";
import { tokensPerSecond } from "./rate";
import { codeForCopyButton, copyText } from "./markdown";
import {
  createErrorElement,
  createMessageElement,
  createStreamingElement,
  setUserText,
  type StreamingElement,
} from "./messageView";

/** Messages built per page when a long session opens. */
const PAGE = 50;

export interface ChatViewOptions {
  store: Store;
  controller: ChatController;
  openSettings: () => void;
  scheduler?: FrameScheduler;
}

export interface ChatView {
  el: HTMLElement;
  focusComposer(): void;
}

export function createChatView(opts: ChatViewOptions): ChatView {
  const { store, controller } = opts;
  const list = h("div", { class: "messages", "data-testid": "thread" });
  const earlier = h("button", { type: "button", class: "show-earlier", hidden: true, text: "Show earlier messages" });
  const empty = h("div", { class: "empty-thread", text: "Ask anything. Everything stays on this computer." });
  const scroller = h("div", { class: "thread-scroll" }, earlier, empty, list);
  const composer = h("textarea", {
    class: "composer-input",
    rows: 2,
    placeholder: "Message (Enter to send, Shift+Enter for a new line)",
    "data-testid": "composer",
    "aria-label": "Message",
  });
  const send = h("button", { type: "button", class: "primary", "data-testid": "send", text: "Send" });
  const stop = h("button", { type: "button", class: "danger", "data-testid": "stop", hidden: true, text: "Stop" });
  const regenerate = h("button", { type: "button", "data-testid": "regenerate", text: "Regenerate" });
  const composerRow = h("div", { class: "composer" }, composer, h("div", { class: "composer-buttons" }, send, stop, regenerate));
  const el = h("section", { class: "chat", "data-testid": "chat" }, scroller, composerRow);

  const elements = new Map<number, HTMLElement>();
  let errorCard: HTMLElement | null = null;
  let streaming: StreamingElement | null = null;
  let coalescer: DeltaCoalescer | null = null;
  let hiddenOlder: ChatMessage[] = [];

  const nearBottom = (): boolean => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const scrollToBottom = (): void => {
    scroller.scrollTop = scroller.scrollHeight;
  };
  const withStickyScroll = (change: () => void): void => {
    const stick = nearBottom();
    change();
    if (stick) scrollToBottom();
  };

  function addMessage(m: ChatMessage, before: Node | null = null): HTMLElement {
    const node = createMessageElement(m);
    elements.set(m.id, node);
    list.insertBefore(node, before);
    return node;
  }

  function clearError(): void {
    errorCard?.remove();
    errorCard = null;
  }

  function showError(state: AppState): void {
    clearError();
    if (!state.lastError) return;
    errorCard = createErrorElement(state.lastError);
    list.append(errorCard);
  }

  function renderThread(state: AppState): void {
    coalescer?.cancel();
    coalescer = null;
    streaming = null;
    errorCard = null;
    elements.clear();
    list.replaceChildren();
    const messages = state.messages;
    hiddenOlder = messages.slice(0, Math.max(0, messages.length - PAGE));
    const fragment = document.createDocumentFragment();
    for (const m of messages.slice(hiddenOlder.length)) {
      const node = createMessageElement(m);
      elements.set(m.id, node);
      fragment.append(node);
    }
    list.append(fragment);
    earlier.hidden = hiddenOlder.length === 0;
    scrollToBottom();
  }

  function showEarlier(): void {
    const page = hiddenOlder.slice(-PAGE);
    hiddenOlder = hiddenOlder.slice(0, hiddenOlder.length - page.length);
    const height = scroller.scrollHeight;
    const first = list.firstChild;
    for (const m of page) addMessage(m, first);
    earlier.hidden = hiddenOlder.length === 0;
    scroller.scrollTop += scroller.scrollHeight - height;
  }

  function removeMissing(state: AppState): void {
    const keep = new Set(state.messages.map((m) => m.id));
    for (const [id, node] of elements) {
      if (!keep.has(id)) {
        node.remove();
        elements.delete(id);
      }
    }
    hiddenOlder = hiddenOlder.filter((m) => keep.has(m.id));
  }

  function startStreaming(): void {
    clearError();
    streaming = createStreamingElement();
    const target = streaming;
    coalescer = createDeltaCoalescer((text) => withStickyScroll(() => target.append(text)), opts.scheduler);
    withStickyScroll(() => list.append(target.el));
  }

  function finishStreaming(state: AppState, previous: AppState): void {
    coalescer?.flush();
    coalescer = null;
    const node = streaming?.el ?? null;
    streaming = null;
    const added = state.messages.length > previous.messages.length ? state.messages[state.messages.length - 1] : undefined;
    withStickyScroll(() => {
      if (added && added.role === "assistant") {
        const fresh = createMessageElement(added);
        elements.set(added.id, fresh);
        if (node) node.replaceWith(fresh);
        else list.append(fresh);
      } else {
        node?.remove();
      }
      showError(state);
    });
  }

  function updateControls(state: AppState): void {
    const s = state.streaming;
    send.disabled = s !== null || (state.status?.loading ?? false);
    stop.hidden = s === null;
    stop.disabled = s?.stopping ?? false;
    stop.textContent = s?.stopping ? "Stopping…" : "Stop";
    const last = state.messages[state.messages.length - 1];
    regenerate.disabled = s !== null || !last;
    empty.hidden = state.messages.length > 0 || s !== null;
    for (const b of list.querySelectorAll<HTMLButtonElement>('[data-action="edit"]')) {
      const id = Number(b.closest<HTMLElement>(".message")?.dataset.id);
      b.disabled = s !== null || !(id > 0);
    }
  }

  function onAction(state: AppState, action: Action, previous: AppState): void {
    switch (action.type) {
      case "streamDelta":
        coalescer?.push(action.text);
        if (state.streaming) streaming?.setRate(tokensPerSecond(state.streaming.rate), action.at);
        return; // the hot path: nothing else to update
      case "sessionOpened":
      case "sessionCleared":
        renderThread(state);
        break;
      case "sessionDeleted":
        if (previous.currentSession === action.id) renderThread(state);
        break;
      case "userMessage": {
        const m = state.messages[state.messages.length - 1];
        clearError();
        if (m) withStickyScroll(() => addMessage(m));
        scrollToBottom();
        break;
      }
      case "messagesTruncated":
        clearError();
        removeMissing(state);
        break;
      case "messageEdited": {
        const node = elements.get(action.id);
        if (node) setUserText(node, action.content);
        break;
      }
      case "idsSynced":
        for (const [from, to] of action.ids) {
          const node = elements.get(from);
          if (!node) continue;
          elements.delete(from);
          elements.set(to, node);
          node.dataset.id = String(to);
        }
        break;
      case "streamStart":
        startStreaming();
        break;
      case "streamStarted":
        streaming?.setSource(action.backend, action.model);
        break;
      case "streamStopRequested":
        streaming?.setStopping();
        break;
      case "streamDone":
      case "streamError":
        finishStreaming(state, previous);
        break;
      case "status":
        break; // a model may have started or finished loading: Send follows it
      default:
        return;
    }
    updateControls(state);
  }

  store.subscribe(onAction);

  // Editing a user message happens in place: its text becomes a textarea.
  function beginEdit(message: HTMLElement): void {
    if (message.querySelector(".edit-box")) return;
    const id = Number(message.dataset.id);
    const current = store.get().messages.find((m) => m.id === id);
    if (!current) return;
    const area = h("textarea", { class: "edit-input", rows: 3, "data-testid": "edit-input" });
    area.value = current.content;
    const save = h("button", { type: "button", class: "primary", "data-testid": "edit-send", text: "Save & resend" });
    const cancel = h("button", { type: "button", text: "Cancel" });
    const box = h("div", { class: "edit-box" }, area, h("div", { class: "composer-buttons" }, save, cancel));
    message.classList.add("editing");
    message.append(box);
    const close = (): void => {
      box.remove();
      message.classList.remove("editing");
    };
    on(cancel, "click", close);
    on(save, "click", () => {
      if (controller.editAndResend(Number(message.dataset.id), area.value)) close();
    });
    on(area, "keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        save.click();
      } else if (e.key === "Escape") close();
    });
    area.focus();
  }

  function submit(): void {
    // While a model loads the shell refuses messages; the text stays in the composer.
    if (store.get().status?.loading) return;
    if (controller.send(composer.value)) composer.value = "";
  }

  on(send, "click", submit);
  on(stop, "click", () => controller.stop());
  on(regenerate, "click", () => controller.regenerate());
  on(earlier, "click", showEarlier);
  on(composer, "keydown", (e) => {
    // isComposing: Enter confirms an IME composition, it must not send.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  on(list, "click", (e) => {
    const target = e.target as Element | null;
    const button = target?.closest<HTMLElement>("[data-action]");
    if (!button) {
      // Links in replies would navigate the app's only window away.
      if (target?.closest("a")) e.preventDefault();
      return;
    }
    switch (button.dataset.action) {
      case "copy-code": {
        const code = codeForCopyButton(button);
        if (code === null) return;
        void copyText(code).then((ok) => {
          button.textContent = ok ? "Copied" : "Copy failed";
          window.setTimeout(() => (button.textContent = "Copy"), 1500);
        });
        break;
      }
      case "edit": {
        const message = button.closest<HTMLElement>(".message");
        if (message) beginEdit(message);
        break;
      }
      case "open-settings":
        opts.openSettings();
        break;
      case "retry":
        controller.regenerate();
        break;
    }
  });

  renderThread(store.get());
  updateControls(store.get());
  return { el, focusComposer: () => composer.focus() };
}
