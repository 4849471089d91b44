// The sessions sidebar: list (newest activity first), new, rename in place, export
// as Markdown, delete with an inline confirmation, and full-text search over messages.
import { h, on } from "../dom";
import { formatTime } from "../format";
import type { SessionSummary, Store } from "../state";
import { snippetRuns, type SearchHit } from "./history";

export interface SidebarActions {
  newSession(): void;
  open(id: string): void;
  rename(id: string, title: string): void;
  /** Saves the conversation as a Markdown file. */
  exportSession(id: string): void;
  remove(id: string): void;
  search(text: string): Promise<SearchHit[]>;
}

export function sessionLabel(s: Pick<SessionSummary, "title" | "preview">): string {
  const title = s.title.trim();
  if (title !== "") return title;
  const preview = s.preview.trim().replace(/\s+/g, " ");
  return preview !== "" ? preview.slice(0, 60) : "New chat";
}

export function createSidebar(store: Store, actions: SidebarActions): HTMLElement {
  const newButton = h("button", { type: "button", class: "primary wide", "data-testid": "session-new", text: "New chat" });
  const searchBox = h("input", {
    type: "search",
    class: "search",
    placeholder: "Search messages",
    "aria-label": "Search messages",
    "data-testid": "session-search",
  });
  const list = h("ul", { class: "session-list", "data-testid": "session-list" });
  const results = h("ul", { class: "search-results", "data-testid": "search-results", hidden: true });
  const el = h("aside", { class: "sidebar" }, newButton, searchBox, list, results);

  function item(s: SessionSummary, current: string | null): HTMLLIElement {
    const li = h("li", {
      class: s.id === current ? "session-item current" : "session-item",
      "data-testid": "session-item",
      "data-id": s.id,
    });
    const open = h(
      "button",
      { type: "button", class: "session-open", "data-action": "open", title: sessionLabel(s) },
      h("span", { class: "session-title", text: sessionLabel(s) }),
      h("span", { class: "session-time", text: formatTime(s.updatedAt) }),
    );
    const rename = h("button", { type: "button", class: "icon", "data-action": "rename", title: "Rename", text: "✎" });
    const save = h("button", { type: "button", class: "icon", "data-action": "export", title: "Export as Markdown", text: "⤓" });
    const remove = h("button", { type: "button", class: "icon", "data-action": "delete", title: "Delete", text: "🗑" });
    li.append(open, h("span", { class: "session-tools" }, rename, save, remove));
    return li;
  }

  function render(): void {
    const { sessions, currentSession } = store.get();
    const fragment = document.createDocumentFragment();
    for (const s of sessions) fragment.append(item(s, currentSession));
    if (sessions.length === 0) fragment.append(h("li", { class: "muted", text: "No chats yet" }));
    list.replaceChildren(fragment);
  }

  function beginRename(li: HTMLElement, id: string): void {
    const s = store.get().sessions.find((x) => x.id === id);
    const input = h("input", { type: "text", class: "rename-input", "data-testid": "session-rename-input" });
    input.value = s ? sessionLabel(s) : "";
    li.replaceChildren(input);
    input.focus();
    input.select();
    let done = false;
    const finish = (commit: boolean): void => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      if (commit && title !== "" && title !== s?.title) actions.rename(id, title);
      render();
    };
    on(input, "keydown", (e) => {
      if (e.key === "Enter") finish(true);
      else if (e.key === "Escape") finish(false);
    });
    on(input, "blur", () => finish(true));
  }

  function confirmDelete(li: HTMLElement, id: string): void {
    const yes = h("button", { type: "button", class: "danger", "data-testid": "session-delete-confirm", text: "Delete" });
    const no = h("button", { type: "button", text: "Cancel" });
    li.replaceChildren(h("span", { class: "confirm-text", text: "Delete this chat?" }), yes, no);
    on(yes, "click", (e) => {
      e.stopPropagation();
      actions.remove(id);
    });
    on(no, "click", (e) => {
      e.stopPropagation();
      render();
    });
    no.focus();
  }

  on(list, "click", (e) => {
    const button = (e.target as Element | null)?.closest<HTMLElement>("[data-action]");
    const li = button?.closest<HTMLElement>(".session-item");
    const id = li?.dataset.id;
    if (!button || !li || !id) return;
    if (button.dataset.action === "open") actions.open(id);
    else if (button.dataset.action === "rename") beginRename(li, id);
    else if (button.dataset.action === "export") actions.exportSession(id);
    else if (button.dataset.action === "delete") confirmDelete(li, id);
  });

  on(newButton, "click", () => actions.newSession());

  // Search: debounced; the newest query wins even if an older one answers later.
  let timer: number | undefined;
  let generation = 0;
  function showResults(hits: SearchHit[]): void {
    const fragment = document.createDocumentFragment();
    for (const hit of hits) {
      const snippet = h("span", { class: "snippet" });
      for (const run of snippetRuns(hit.snippet)) snippet.append(run.match ? h("mark", { text: run.text }) : run.text);
      const title = hit.sessionTitle.trim() || "Untitled chat";
      fragment.append(
        h(
          "li",
          { class: "search-hit", "data-testid": "search-hit" },
          h(
            "button",
            { type: "button", "data-session": hit.sessionId },
            h("span", { class: "session-title", text: title }),
            snippet,
          ),
        ),
      );
    }
    if (hits.length === 0) fragment.append(h("li", { class: "muted", text: "No matches" }));
    results.replaceChildren(fragment);
  }
  on(searchBox, "input", () => {
    window.clearTimeout(timer);
    const text = searchBox.value;
    const mine = ++generation;
    if (text.trim() === "") {
      results.hidden = true;
      list.hidden = false;
      return;
    }
    timer = window.setTimeout(() => {
      actions
        .search(text)
        .then((hits) => {
          if (mine !== generation) return;
          showResults(hits);
          results.hidden = false;
          list.hidden = true;
        })
        .catch((err: unknown) => {
          if (mine !== generation) return;
          results.replaceChildren(h("li", { class: "muted", text: `Search failed: ${String(err)}` }));
          results.hidden = false;
          list.hidden = true;
        });
    }, 200);
  });
  on(results, "click", (e) => {
    const button = (e.target as Element | null)?.closest<HTMLElement>("[data-session]");
    if (button?.dataset.session) actions.open(button.dataset.session);
  });

  const relevant = new Set(["sessions", "sessionOpened", "sessionCleared", "sessionRenamed", "sessionDeleted"]);
  store.subscribe((_state, action) => {
    if (relevant.has(action.type)) render();
  });
  render();
  return el;
}
