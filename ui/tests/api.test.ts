import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { afterEach, describe, expect, it } from "vitest";
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

  it("passes a channel for chat events", async () => {
    let sent: unknown;
    mockIPC((cmd, payload) => {
      sent = payload;
      if (cmd === "send_message") {
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
        };
      }
      return null;
    });
    const events: ChatEvent[] = [];
    const turn = await api.sendMessage("hello", (e) => events.push(e));
    expect(turn.text).toBe("ok");
    expect(sent).toMatchObject({ text: "hello" });
    expect((sent as { onEvent: unknown }).onEvent).toBeDefined();
  });
});
