import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { afterAll, describe, expect, it } from "vitest";
import type { ChatEvent } from "../src/api";
import { status } from "./helpers";

afterAll(() => clearMocks());

const settle = () => new Promise((r) => setTimeout(r, 20));

describe("app boot (main.ts against a mocked shell)", () => {
  it("loads status and sessions, switches tabs, sends, and Esc stops", async () => {
    const invoked: string[] = [];
    let channel: Channel<ChatEvent> | null = null;
    mockIPC((cmd, payload) => {
      invoked.push(cmd);
      switch (cmd) {
        case "app_status":
          return status({ session: null, dbPath: "/data/hearth.db" });
        case "plugin:sql|load":
          return (payload as { db: string }).db;
        case "plugin:sql|select":
          return [{ id: "s1", title: "First chat", updated_at: Date.now(), message_count: 2, preview: "hi" }];
        case "get_settings":
          return {
            backend: "embedded", model: "/m.gguf", ctx: 4096, gpuLayers: "auto", temperature: 0.7,
            topP: 0.9, maxTokens: 256,
          };
        case "list_models":
          return [];
        case "hardware_snapshot":
          return { cpuPercent: 12, ramUsedBytes: 1, ramTotalBytes: 2, gpus: [] };
        case "recent_performance":
          return [];
        case "send_message":
          channel = (payload as { onEvent: Channel<ChatEvent> }).onEvent;
          return new Promise(() => {}); // the turn stays open
        case "stop_generation":
          return null;
        default:
          return null;
      }
    });
    document.body.innerHTML = '<div id="app"></div>';
    await import("../src/main");
    await settle();

    const q = <T extends HTMLElement = HTMLElement>(id: string) => document.querySelector<T>(`[data-testid="${id}"]`)!;
    expect(invoked).toContain("app_status");
    expect(invoked).toContain("plugin:sql|load");
    expect(document.querySelectorAll('[data-testid="session-item"]')).toHaveLength(1);
    expect(q("status-phase").textContent).toBe("Ready");

    q("tab-settings").click();
    await settle();
    expect(q("settings").hidden).toBe(false);
    expect(q("chat").hidden).toBe(true);
    expect(q<HTMLInputElement>("setting-ctx").value).toBe("4096");

    q("tab-dashboard").click();
    await settle();
    expect(invoked).toContain("hardware_snapshot");
    expect(q("dash-cpu").textContent).toBe("12%");

    q("tab-chat").click();
    const composer = q<HTMLTextAreaElement>("composer");
    composer.value = "hello";
    composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await settle();
    expect(channel).not.toBeNull();
    expect(q("reply-streaming")).not.toBeNull();
    document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    await settle();
    expect(invoked).toContain("stop_generation");
    expect(q("stop").textContent).toBe("Stopping…");
    q("tab-settings").click(); // leaving the dashboard stops its polling
  });
});
