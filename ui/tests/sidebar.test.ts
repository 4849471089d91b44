import { afterEach, describe, expect, it, vi } from "vitest";
import { createSidebar } from "../src/sessions/sidebar";
import { createStore } from "../src/state";

afterEach(() => vi.useRealTimers());

function setup() {
  const store = createStore();
  store.dispatch({
    type: "sessions",
    sessions: [
      { id: "new", title: "", updatedAt: Date.now(), messageCount: 2, preview: "Newest question" },
      { id: "old", title: "Old chat", updatedAt: Date.now() - 86_400_000 * 3, messageCount: 8, preview: "x" },
    ],
  });
  const actions = {
    newSession: vi.fn(),
    open: vi.fn(),
    rename: vi.fn(),
    exportSession: vi.fn(),
    remove: vi.fn(),
    search: vi.fn(async () => [
      { messageId: 3, sessionId: "old", role: "user", sessionTitle: "Old chat", snippet: "about \u0002rust\u0003 lifetimes" },
    ]),
  };
  const el = createSidebar(store, actions);
  document.body.replaceChildren(el);
  const items = () => [...el.querySelectorAll<HTMLElement>('[data-testid="session-item"]')];
  return { store, actions, el, items };
}

describe("sessions sidebar", () => {
  it("lists sessions in store order with labels and opens on click", () => {
    const { items, actions } = setup();
    expect(items().map((i) => i.textContent?.includes("Newest question") || i.textContent?.includes("Old chat"))).toEqual([
      true,
      true,
    ]);
    expect(items().map((i) => i.dataset.id)).toEqual(["new", "old"]);
    items()[1]!.querySelector<HTMLButtonElement>('[data-action="open"]')!.click();
    expect(actions.open).toHaveBeenCalledWith("old");
  });

  it("exports the conversation whose button was clicked", () => {
    const { items, actions } = setup();
    items()[1]!.querySelector<HTMLButtonElement>('[data-action="export"]')!.click();
    expect(actions.exportSession).toHaveBeenCalledWith("old");
    expect(actions.remove).not.toHaveBeenCalled();
  });

  it("deletes only after confirming", () => {
    const { items, actions, el } = setup();
    items()[0]!.querySelector<HTMLButtonElement>('[data-action="delete"]')!.click();
    expect(actions.remove).not.toHaveBeenCalled();
    el.querySelector<HTMLButtonElement>('[data-testid="session-delete-confirm"]')!.click();
    expect(actions.remove).toHaveBeenCalledWith("new");
  });

  it("renames in place with Enter, and Escape cancels", () => {
    const { items, actions, el } = setup();
    items()[1]!.querySelector<HTMLButtonElement>('[data-action="rename"]')!.click();
    let input = el.querySelector<HTMLInputElement>('[data-testid="session-rename-input"]')!;
    input.value = "Renamed";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape" }));
    expect(actions.rename).not.toHaveBeenCalled();
    items()[1]!.querySelector<HTMLButtonElement>('[data-action="rename"]')!.click();
    input = el.querySelector<HTMLInputElement>('[data-testid="session-rename-input"]')!;
    input.value = "Renamed";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(actions.rename).toHaveBeenCalledWith("old", "Renamed");
  });

  it("searches after typing stops and shows highlighted hits", async () => {
    vi.useFakeTimers();
    const { el, actions } = setup();
    const box = el.querySelector<HTMLInputElement>('[data-testid="session-search"]')!;
    box.value = "ru";
    box.dispatchEvent(new Event("input"));
    box.value = "rust";
    box.dispatchEvent(new Event("input"));
    await vi.advanceTimersByTimeAsync(250);
    expect(actions.search).toHaveBeenCalledTimes(1);
    expect(actions.search).toHaveBeenCalledWith("rust");
    const hit = el.querySelector('[data-testid="search-hit"]')!;
    expect(hit.querySelector("mark")?.textContent).toBe("rust");
    expect(el.querySelector<HTMLElement>('[data-testid="session-list"]')!.hidden).toBe(true);
    hit.querySelector("button")!.click();
    expect(actions.open).toHaveBeenCalledWith("old");
    box.value = "";
    box.dispatchEvent(new Event("input"));
    expect(el.querySelector<HTMLElement>('[data-testid="session-list"]')!.hidden).toBe(false);
  });
});
