import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { afterAll, describe, expect, it, vi } from "vitest";
import type { ChatEvent } from "../src/api";
import { cpuDevice, status } from "./helpers";

afterAll(() => clearMocks());

// Each step waits for what it expects to appear (vi.waitFor polls until the assertion
// holds, failing after its timeout), never for a fixed time.

describe("app boot (main.ts against a mocked shell)", () => {
  it("loads status and sessions, switches tabs, sends, and Esc stops", async () => {
    const invoked: string[] = [];
    // The model went to the CPU, not the GPU asked for: the window says so once.
    const note = "Vulkan0 had no room for any layer; the model runs on the CPU";
    const placement = { device: "CPU", gpuLayers: 0, layersTotal: 25, summary: "on CPU", note };
    let channel: Channel<ChatEvent> | null = null;
    mockIPC((cmd, payload) => {
      invoked.push(cmd);
      switch (cmd) {
        case "app_status":
          return status({ session: null, dbPath: "/data/hearth.db", placement });
        case "plugin:sql|load":
          return (payload as { db: string }).db;
        case "plugin:sql|select":
          return [{ id: "s1", title: "First chat", updated_at: Date.now(), message_count: 2, preview: "hi" }];
        case "get_settings":
          return {
            backend: "embedded", model: "/m.gguf", ctx: 4096, gpuLayers: "auto", device: "auto", temperature: 0.7,
            topP: 0.9, maxTokens: 256,
          };
        case "list_models":
          return [];
        case "list_devices":
          return [cpuDevice({ auto: true })];
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

    const q = <T extends HTMLElement = HTMLElement>(id: string) => document.querySelector<T>(`[data-testid="${id}"]`)!;
    await vi.waitFor(() => {
      expect(q("status-phase").textContent).toBe("Ready");
      expect(document.querySelectorAll('[data-testid="session-item"]')).toHaveLength(1);
    });
    expect(invoked).toContain("app_status");
    expect(invoked).toContain("plugin:sql|load");
    expect(document.querySelectorAll('[data-testid="session-item"]')).toHaveLength(1);
    expect(q("status-phase").textContent).toBe("Ready");
    expect(q("toast").textContent).toBe(`qwen2.5-0.5b-instruct-q4_k_m: ${note}`);
    expect(q("status-model").title).toBe("qwen2.5-0.5b-instruct-q4_k_m on CPU");

    q("tab-settings").click();
    await vi.waitFor(() => expect(q<HTMLInputElement>("setting-ctx").value).toBe("4096"));
    await vi.waitFor(() => expect(q<HTMLSelectElement>("setting-device").options[0]!.text).toBe("Auto (uses CPU)"));
    expect(invoked).toContain("list_devices");
    expect(q("settings").hidden).toBe(false);
    expect(q("chat").hidden).toBe(true);

    q("tab-dashboard").click();
    await vi.waitFor(() => expect(q("dash-cpu").textContent).toBe("12%"));
    expect(invoked).toContain("hardware_snapshot");

    q("tab-chat").click();
    const composer = q<HTMLTextAreaElement>("composer");
    composer.value = "hello";
    composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await vi.waitFor(() => {
      expect(channel).not.toBeNull();
      expect(q("reply-streaming")).not.toBeNull();
    });
    document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    await vi.waitFor(() => expect(q("stop").textContent).toBe("Stopping…"));
    expect(invoked).toContain("stop_generation");
    q("tab-settings").click(); // leaving the dashboard stops its polling
  });
});
