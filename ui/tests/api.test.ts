import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { afterEach, describe, expect, it } from "vitest";
import type { Channel } from "@tauri-apps/api/core";
import { api, ApiError, type ChatEvent } from "../src/api";

afterEach(() => clearMocks());

describe("api wrapper", () => {
  it("invokes the snake_case command with camelCase arguments and returns the data", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, payload) => {
      calls.push([cmd, payload]);
      if (cmd === "recent_performance") return [{ timestamp: 1, backend: "b", model: "m", decodeTps: 3, ttftMs: 4 }];
      return null;
    });
    const rows = await api.recentPerformance(5);
    await api.renameSession("s1", "New title");
    expect(rows[0]?.decodeTps).toBe(3);
    expect(calls).toEqual([
      ["recent_performance", { limit: 5 }],
      ["rename_session", { id: "s1", title: "New title" }],
    ]);
  });

  it("turns an AppError into a thrown ApiError with its code", async () => {
    mockIPC(() => {
      throw { code: "model_not_found", message: "no such file" };
    });
    const err = await api.appStatus().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: "model_not_found", message: "no such file" });
  });

  it("passes a channel for chat events and delivers them in order", async () => {
    let sent: unknown;
    const streamed: ChatEvent[] = [
      { kind: "started", backend: "embedded", model: "m" },
      { kind: "delta", text: "o", tokens: 1 },
      { kind: "delta", text: "k", tokens: 1 },
      { kind: "done", decodeTps: 1, ttftMs: 2, completionTokens: 2, finishReason: "stop" },
    ];
    mockIPC((cmd, payload) => {
      sent = payload;
      if (cmd === "send_message") {
        // What the shell does: the events go through the channel's own callback, with
        // their indices, before the command returns. Sent out of order on purpose: the
        // channel puts them back in order.
        const channel = (payload as { onEvent: Channel<ChatEvent> }).onEvent;
        const internals = (window as unknown as {
          __TAURI_INTERNALS__: { runCallback: (id: number, data: unknown) => void };
        }).__TAURI_INTERNALS__;
        for (const index of [1, 0, 3, 2]) {
          internals.runCallback(channel.id, { index, message: streamed[index] });
        }
        return {
          sessionId: "s",
          backend: "embedded",
          model: "m",
          text: "ok",
          decodeTps: 1,
          ttftMs: 2,
          completionTokens: 1,
          finishReason: "stop",
          retries: 0,
          fallbacks: 0,
          userMessageId: 3,
          replyMessageId: 4,
        };
      }
      return null;
    });
    const events: ChatEvent[] = [];
    const turn = await api.sendMessage("hello", (e) => events.push(e));
    expect(turn.text).toBe("ok");
    expect(sent).toMatchObject({ text: "hello" });
    expect((sent as { onEvent: unknown }).onEvent).toBeDefined();
    expect(events).toEqual(streamed);
  });
});
