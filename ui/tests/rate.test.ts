import { describe, expect, it } from "vitest";
import { createStreamingElement, RATE_REFRESH_MS } from "../src/chat/messageView";
import { addTokens, NO_TOKENS, tokensPerSecond } from "../src/chat/rate";
import { initialState, reduce, type Action, type AppState } from "../src/state";

describe("rate: tokens/s as the window receives them", () => {
  it("counts tokens after the first batch over the time after it", () => {
    let r = addTokens(NO_TOKENS, 2, 1000);
    expect(tokensPerSecond(r)).toBeNull(); // one batch spans no time
    r = addTokens(r, 5, 1100);
    r = addTokens(r, 5, 1200);
    expect(r.tokens).toBe(12);
    expect(tokensPerSecond(r)).toBeCloseTo(10 / 0.2, 6);
  });

  it("ignores empty batches and never runs the clock backwards", () => {
    let r = addTokens(NO_TOKENS, 0, 5);
    expect(r).toBe(NO_TOKENS);
    r = addTokens(addTokens(r, 1, 0), 4, 500);
    r = addTokens(r, 1, 400); // delivered out of order: the span stays 0.5 s
    expect(r.lastAt).toBe(500);
    expect(tokensPerSecond(r)).toBeCloseTo(10, 6);
  });

  it("a finished reply keeps the rate it was received at", () => {
    const actions: Action[] = [
      { type: "streamStart", mode: "send" },
      { type: "streamDelta", text: "a", tokens: 1, at: 0 },
      { type: "streamDelta", text: "bcd", tokens: 3, at: 100 },
      { type: "streamDelta", text: "e", tokens: 1, at: 200 },
    ];
    const s = actions.reduce(reduce, initialState() as AppState);
    const done = reduce(s, {
      type: "streamDone",
      id: -1,
      turn: { sessionId: null, backend: "embedded", model: "m", text: "abcde", decodeTps: 20, ttftMs: 5, finishReason: "stop" },
    });
    expect(done.messages[0]?.deliveredTps).toBeCloseTo(20, 6);
  });

  it("the streaming badge shows the live rate, refreshed at most every RATE_REFRESH_MS", () => {
    const s = createStreamingElement();
    const badge = s.el.querySelector('[data-testid="badge-streaming"]')!;
    s.setSource("embedded", "qwen");
    expect(badge.textContent).toBe("embedded · qwen");
    s.setRate(null, 0);
    expect(badge.textContent).toBe("embedded · qwen");
    s.setRate(41.04, 10);
    expect(badge.textContent).toBe("embedded · qwen · 41.0 tok/s");
    s.setRate(55, 10 + RATE_REFRESH_MS - 1);
    expect(badge.textContent).toBe("embedded · qwen · 41.0 tok/s");
    s.setRate(55, 10 + RATE_REFRESH_MS);
    expect(badge.textContent).toBe("embedded · qwen · 55.0 tok/s");
    s.setStopping();
    expect(badge.textContent).toBe("embedded · qwen · 55.0 tok/s · stopping…");
  });
});
