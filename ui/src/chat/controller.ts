// Chat turns: what the composer's buttons do. Talks to the shell through the
// api and records every step in the store; it knows nothing about the DOM.
import { toApiError, type Api, type ChatEvent, type TurnView } from "../api";
import type { ChatError, Store, TurnMode } from "../state";

export interface ChatControllerDeps {
  store: Store;
  api: Pick<Api, "sendMessage" | "regenerate" | "editAndResend" | "stopGeneration" | "appStatus">;
  nextLocalId: () => number;
  /** Called after every turn (the sidebar re-reads its list, the top bar its status). */
  afterTurn?: () => void;
}

export interface ChatController {
  send(text: string): boolean;
  regenerate(): boolean;
  editAndResend(messageId: number, text: string): boolean;
  stop(): void;
}

export function createChatController(deps: ChatControllerDeps): ChatController {
  const { store, api } = deps;

  async function runTurn(mode: TurnMode, start: (onEvent: (e: ChatEvent) => void) => Promise<TurnView>) {
    store.dispatch({ type: "streamStart", mode });
    let channelError = null as ChatError | null; // set from the channel callback
    const onEvent = (e: ChatEvent): void => {
      switch (e.kind) {
        case "started":
          store.dispatch({ type: "streamStarted", backend: e.backend, model: e.model });
          break;
        case "delta":
          store.dispatch({ type: "streamDelta", text: e.text, tokens: e.tokens, at: performance.now() });
          break;
        case "error":
          channelError = { code: e.code, message: e.message };
          break;
        case "done":
          // The turn's return value carries the same numbers and the session id.
          break;
      }
    };
    try {
      const turn = await start(onEvent);
      if (channelError && turn.finishReason === "error") {
        store.dispatch({ type: "streamError", id: deps.nextLocalId(), error: channelError });
      } else {
        store.dispatch({ type: "streamDone", id: deps.nextLocalId(), turn });
        syncIds(turn);
      }
    } catch (e) {
      const err = channelError ?? toApiError(e);
      store.dispatch({ type: "streamError", id: deps.nextLocalId(), error: { code: err.code, message: err.message } });
    } finally {
      deps.afterTurn?.();
    }
  }

  /**
   * Gives the turn's messages the ids the shell stored them under (the turn returns
   * them), so edit & resend can name them: the reply, and the user's message (new
   * after a regenerate, which writes it again).
   */
  function syncIds(turn: TurnView): void {
    const messages = store.get().messages;
    const pairs: Array<[number, number]> = [];
    const reply = messages[messages.length - 1];
    if (reply?.role === "assistant" && turn.replyMessageId !== null) pairs.push([reply.id, turn.replyMessageId]);
    const user = [...messages].reverse().find((m) => m.role === "user");
    if (user && turn.userMessageId !== null) pairs.push([user.id, turn.userMessageId]);
    if (pairs.length > 0) store.dispatch({ type: "idsSynced", ids: pairs });
  }

  const busy = (): boolean => store.get().streaming !== null;

  return {
    send(text) {
      const trimmed = text.trim();
      if (trimmed === "" || busy()) return false;
      store.dispatch({ type: "userMessage", id: deps.nextLocalId(), content: text });
      void runTurn("send", (cb) => api.sendMessage(text, cb));
      return true;
    },
    regenerate() {
      const messages = store.get().messages;
      const last = messages[messages.length - 1];
      if (busy() || !last) return false;
      if (last.role === "assistant") {
        const before = messages[messages.length - 2];
        if (!before) return false;
        store.dispatch({ type: "messagesTruncated", afterId: before.id });
      }
      void runTurn("regenerate", (cb) => api.regenerate(cb));
      return true;
    },
    editAndResend(messageId, text) {
      if (busy() || text.trim() === "" || messageId < 0) return false;
      if (!store.get().messages.some((m) => m.id === messageId && m.role === "user")) return false;
      store.dispatch({ type: "messageEdited", id: messageId, content: text });
      store.dispatch({ type: "messagesTruncated", afterId: messageId });
      void runTurn("edit", (cb) => api.editAndResend(messageId, text, cb));
      return true;
    },
    stop() {
      const s = store.get().streaming;
      if (!s || s.stopping) return;
      store.dispatch({ type: "streamStopRequested" });
      api.stopGeneration().catch(() => {
        // The turn's own promise reports how it ended; nothing to add here.
      });
    },
  };
}
