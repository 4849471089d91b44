// DOM for single messages. Each function builds or patches one element; the
// thread is never rebuilt for a change to one message.
import { h } from "../dom";
import { formatMs, formatTps } from "../format";
import type { ChatError, ChatMessage } from "../state";
import { actionFor } from "./errors";
import { renderMarkdownInto } from "./markdown";

export interface BadgeParts {
  backend?: string | null;
  model?: string | null;
  decodeTps?: number | null;
  ttftMs?: number | null;
}

/** "backend · model · 42.0 tok/s · TTFT 180 ms", leaving out what is unknown. */
export function formatBadge(p: BadgeParts): string {
  const parts: string[] = [];
  if (p.backend) parts.push(p.backend);
  if (p.model) parts.push(p.model);
  if (p.decodeTps !== null && p.decodeTps !== undefined) parts.push(formatTps(p.decodeTps));
  if (p.ttftMs !== null && p.ttftMs !== undefined) parts.push(`TTFT ${formatMs(p.ttftMs)}`);
  return parts.join(" · ");
}

function incompleteLabel(m: ChatMessage): string {
  if (m.finishReason === "length") return "Incomplete: stopped at the max tokens limit";
  if (m.finishReason === "error" || m.error) return "Incomplete: generation failed";
  return "Incomplete: stopped before the end";
}

export function createMessageElement(m: ChatMessage): HTMLElement {
  const body = h("div", { class: "message-body" });
  const el = h("article", {
    class: `message ${m.role}`,
    "data-testid": "message",
    "data-role": m.role,
    "data-id": m.id,
  });
  if (m.role === "assistant") {
    renderMarkdownInto(body, m.content);
    el.append(body);
    const badge = formatBadge(m);
    if (badge) {
      const badgeEl = h("div", { class: "badge", "data-testid": "badge", text: badge });
      if (m.deliveredTps !== null && m.deliveredTps !== undefined) {
        // The rate as this window received it, next to the engine's own in the text.
        badgeEl.dataset.deliveredTps = m.deliveredTps.toFixed(2);
        badgeEl.title = `Received here at ${formatTps(m.deliveredTps)}`;
      }
      el.append(badgeEl);
    }
    if (m.incomplete) {
      el.classList.add("incomplete");
      el.append(h("div", { class: "incomplete-note", "data-testid": "incomplete", text: incompleteLabel(m) }));
    }
  } else {
    body.classList.add("plain");
    body.textContent = m.content;
    el.append(body);
    if (m.role === "user") {
      el.append(
        h(
          "div",
          { class: "message-actions" },
          h("button", {
            type: "button",
            class: "link-button",
            "data-action": "edit",
            "data-testid": "edit",
            text: "Edit",
          }),
        ),
      );
    }
  }
  return el;
}

/** Replaces a user message's text (after an edit). */
export function setUserText(el: HTMLElement, text: string): void {
  const body = el.querySelector<HTMLElement>(".message-body");
  if (body) body.textContent = text;
}

export interface StreamingElement {
  el: HTMLElement;
  append(text: string): void;
  setSource(backend: string, model: string): void;
  /** The live tokens/s; the badge text changes at most every RATE_REFRESH_MS. */
  setRate(tps: number | null, now: number): void;
  setStopping(): void;
}

export const RATE_REFRESH_MS = 250;

/**
 * The reply being generated. Text is appended to one Text node as it arrives
 * (cheap, and never reflows what is above it); markdown is rendered once, when
 * the reply is done and this element is replaced.
 */
export function createStreamingElement(): StreamingElement {
  const text = document.createTextNode("");
  const body = h("div", { class: "message-body plain streaming-text" });
  body.append(text);
  const badge = h("div", { class: "badge", "data-testid": "badge-streaming", text: "…" });
  const cursor = h("span", { class: "cursor", "aria-hidden": "true" });
  body.append(cursor);
  const el = h(
    "article",
    {
      class: "message assistant streaming",
      "data-testid": "reply-streaming",
      "data-role": "assistant",
      "aria-live": "polite",
      "aria-busy": "true",
    },
    body,
    badge,
  );
  let source: { backend: string; model: string } | null = null;
  let stopping = false;
  let rate: number | null = null;
  let rateShownAt = -Infinity;
  const showBadge = (): void => {
    const parts = formatBadge({ ...source, decodeTps: rate });
    badge.textContent = stopping ? `${parts} · stopping…` : parts || "…";
  };
  return {
    el,
    append: (t) => text.appendData(t),
    setSource: (backend, model) => {
      source = { backend, model };
      showBadge();
    },
    setRate: (tps, now) => {
      if (tps === null || now - rateShownAt < RATE_REFRESH_MS) return;
      rate = tps;
      rateShownAt = now;
      showBadge();
    },
    setStopping: () => {
      el.classList.add("stopping");
      stopping = true;
      showBadge();
    },
  };
}

export function createErrorElement(error: ChatError): HTMLElement {
  const action = actionFor(error.code);
  const actionButton =
    action === "settings"
      ? h("button", { type: "button", "data-action": "open-settings", text: "Open Settings" })
      : action === "retry"
        ? h("button", { type: "button", "data-action": "retry", text: "Retry" })
        : null;
  return h(
    "div",
    { class: "error-card", role: "alert", "data-testid": "chat-error", "data-code": error.code },
    h("strong", { text: error.message }),
    actionButton,
  );
}
