// The app's state and every way it changes, as a pure reducer plus a tiny
// store. Views subscribe and receive the action with the new state, so they can
// patch the DOM for exactly what changed (a delta appends text; it never
// re-renders the thread).
import type { AppStatus, UiErrorCode } from "./api";
import { addTokens, NO_TOKENS, tokensPerSecond, type TokenRate } from "./chat/rate";

export type Tab = "chat" | "models" | "settings" | "dashboard";

export interface SessionSummary {
  id: string;
  title: string;
  updatedAt: number;
  messageCount: number;
  /** The first user message, for untitled sessions. */
  preview: string;
}

export interface ChatError {
  code: UiErrorCode;
  message: string;
}

/**
 * A message in the open thread (a MessageView from the shell fits). Ids below
 * zero are local: shown before the store has given the message its id.
 */
export interface ChatMessage {
  id: number;
  role: string;
  content: string;
  backend?: string | null;
  model?: string | null;
  decodeTps?: number | null;
  ttftMs?: number | null;
  incomplete: boolean;
  finishReason?: string | null;
  error?: ChatError | null;
  /** Tokens/s as this window received the reply (set on replies streamed here). */
  deliveredTps?: number | null;
}

export type TurnMode = "send" | "regenerate" | "edit";

export interface StreamingReply {
  mode: TurnMode;
  backend: string | null;
  model: string | null;
  text: string;
  stopping: boolean;
  rate: TokenRate;
}

export interface AppState {
  status: AppStatus | null;
  tab: Tab;
  sessions: SessionSummary[];
  currentSession: string | null;
  messages: ChatMessage[];
  streaming: StreamingReply | null;
  lastError: ChatError | null;
}

export interface TurnResult {
  sessionId: string | null;
  backend: string;
  model: string;
  text: string;
  decodeTps: number;
  ttftMs: number;
  finishReason: string;
}

export type Action =
  | { type: "status"; status: AppStatus }
  | { type: "tab"; tab: Tab }
  | { type: "sessions"; sessions: SessionSummary[] }
  | { type: "sessionOpened"; id: string; messages: readonly ChatMessage[] }
  | { type: "sessionCleared" }
  | { type: "sessionRenamed"; id: string; title: string }
  | { type: "sessionDeleted"; id: string }
  | { type: "userMessage"; id: number; content: string }
  | { type: "messagesTruncated"; afterId: number }
  | { type: "messageEdited"; id: number; content: string }
  | { type: "idsSynced"; ids: ReadonlyArray<readonly [number, number]> }
  | { type: "streamStart"; mode: TurnMode }
  | { type: "streamStarted"; backend: string; model: string }
  /** `tokens`: how many tokens the batch holds; `at`: when it arrived (performance.now()). */
  | { type: "streamDelta"; text: string; tokens: number; at: number }
  | { type: "streamStopRequested" }
  | { type: "streamDone"; id: number; turn: TurnResult }
  | { type: "streamError"; id: number; error: ChatError };

export function initialState(): AppState {
  return {
    status: null,
    tab: "chat",
    sessions: [],
    currentSession: null,
    messages: [],
    streaming: null,
    lastError: null,
  };
}

/** A reply that ended for any reason but its natural end is incomplete. */
export function isIncompleteFinish(finishReason: string, stopRequested: boolean): boolean {
  return stopRequested || finishReason !== "stop";
}

export function reduce(state: AppState, action: Action): AppState {
  switch (action.type) {
    case "status":
      return { ...state, status: action.status };
    case "tab":
      return state.tab === action.tab ? state : { ...state, tab: action.tab };
    case "sessions":
      return { ...state, sessions: action.sessions };
    case "sessionOpened":
      return {
        ...state,
        currentSession: action.id,
        messages: action.messages.map((m) => ({ ...m })),
        streaming: null,
        lastError: null,
      };
    case "sessionCleared":
      return { ...state, currentSession: null, messages: [], streaming: null, lastError: null };
    case "sessionRenamed":
      return {
        ...state,
        sessions: state.sessions.map((s) => (s.id === action.id ? { ...s, title: action.title } : s)),
      };
    case "sessionDeleted": {
      const current = state.currentSession === action.id;
      return {
        ...state,
        sessions: state.sessions.filter((s) => s.id !== action.id),
        currentSession: current ? null : state.currentSession,
        messages: current ? [] : state.messages,
        streaming: current ? null : state.streaming,
      };
    }
    case "userMessage":
      return {
        ...state,
        lastError: null,
        messages: [...state.messages, { id: action.id, role: "user", content: action.content, incomplete: false }],
      };
    case "messagesTruncated": {
      const at = state.messages.findIndex((m) => m.id === action.afterId);
      if (at < 0) return state;
      return { ...state, messages: state.messages.slice(0, at + 1) };
    }
    case "messageEdited":
      return {
        ...state,
        messages: state.messages.map((m) => (m.id === action.id ? { ...m, content: action.content } : m)),
      };
    case "idsSynced": {
      const map = new Map(action.ids);
      return { ...state, messages: state.messages.map((m) => (map.has(m.id) ? { ...m, id: map.get(m.id)! } : m)) };
    }
    case "streamStart":
      if (state.streaming) return state;
      return {
        ...state,
        lastError: null,
        streaming: { mode: action.mode, backend: null, model: null, text: "", stopping: false, rate: NO_TOKENS },
      };
    case "streamStarted":
      if (!state.streaming) return state;
      return { ...state, streaming: { ...state.streaming, backend: action.backend, model: action.model } };
    case "streamDelta":
      if (!state.streaming || action.text === "") return state;
      return {
        ...state,
        streaming: {
          ...state.streaming,
          text: state.streaming.text + action.text,
          rate: addTokens(state.streaming.rate, action.tokens, action.at),
        },
      };
    case "streamStopRequested":
      if (!state.streaming || state.streaming.stopping) return state;
      return { ...state, streaming: { ...state.streaming, stopping: true } };
    case "streamDone": {
      const s = state.streaming;
      if (!s) return state;
      const { turn } = action;
      const reply: ChatMessage = {
        id: action.id,
        role: "assistant",
        // The turn's text is authoritative; the streamed text only stands in
        // when a stopped turn came back empty.
        content: turn.text !== "" ? turn.text : s.text,
        backend: turn.backend || s.backend,
        model: turn.model || s.model,
        decodeTps: turn.decodeTps,
        ttftMs: turn.ttftMs,
        incomplete: isIncompleteFinish(turn.finishReason, s.stopping),
        finishReason: turn.finishReason,
        deliveredTps: tokensPerSecond(s.rate),
      };
      return {
        ...state,
        currentSession: turn.sessionId || state.currentSession,
        streaming: null,
        messages: [...state.messages, reply],
      };
    }
    case "streamError": {
      const s = state.streaming;
      if (!s) return { ...state, lastError: action.error };
      const messages = [...state.messages];
      // Keep what arrived before the failure, marked incomplete, so nothing
      // the user already read disappears.
      if (s.text !== "") {
        messages.push({
          id: action.id,
          role: "assistant",
          content: s.text,
          backend: s.backend,
          model: s.model,
          incomplete: true,
          finishReason: "error",
          error: action.error,
        });
      }
      return { ...state, streaming: null, messages, lastError: action.error };
    }
  }
}

export type Listener = (state: AppState, action: Action, previous: AppState) => void;

export interface Store {
  get(): AppState;
  dispatch(action: Action): void;
  subscribe(listener: Listener): () => void;
}

export function createStore(initial: AppState = initialState()): Store {
  let state = initial;
  const listeners = new Set<Listener>();
  return {
    get: () => state,
    dispatch(action) {
      const previous = state;
      state = reduce(state, action);
      if (state === previous) return;
      for (const l of [...listeners]) l(state, action, previous);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** Local ids for messages not yet stored: negative, so they never clash. */
export function localIds(): () => number {
  let next = -1;
  return () => next--;
}
