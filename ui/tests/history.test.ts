import { describe, expect, it, vi } from "vitest";
import { createHistory, fts5Query, snippetRuns, type SqlReader } from "../src/sessions/history";
import { sessionLabel } from "../src/sessions/sidebar";

describe("fts5Query (same rules as hearth-store)", () => {
  it("quotes every word so operators are plain text", () => {
    expect(fts5Query("rust AND NEAR(x) -foo *")).toBe('"rust" "AND" "NEAR(x)" "-foo" "*"');
  });
  it("doubles inner quotes", () => {
    expect(fts5Query('say "hi"')).toBe('"say" """hi"""');
  });
  it("splits on whitespace and control characters, drops repeats case-insensitively", () => {
    expect(fts5Query("a\u0000b\tB  a\nc")).toBe('"a" "b" "c"');
  });
  it("keeps at most 32 words and returns null for no words", () => {
    const many = Array.from({ length: 40 }, (_, i) => `w${i}`).join(" ");
    expect(fts5Query(many)!.split(" ")).toHaveLength(32);
    expect(fts5Query("  \n\t ")).toBeNull();
  });
});

describe("history queries", () => {
  it("lists sessions newest activity first, select only", async () => {
    const select = vi.fn(async () => [
      { id: "b", title: "", updated_at: 20, message_count: 2, preview: "How do I…" },
      { id: "a", title: "Old", updated_at: 10, message_count: 4, preview: null },
    ]);
    const db: SqlReader = { select: select as SqlReader["select"] };
    const sessions = await createHistory(db).listSessions(50);
    const [sql, binds] = select.mock.calls[0] as unknown as [string, unknown[]];
    expect(sql).toMatch(/^\s*SELECT/i);
    expect(sql).toMatch(/ORDER BY s\.updated_at DESC/);
    expect(binds).toEqual([50]);
    expect(sessions.map((s) => [s.id, s.preview])).toEqual([
      ["b", "How do I…"],
      ["a", ""],
    ]);
  });

  it("searches through the FTS table with the sanitised query", async () => {
    const select = vi.fn(async () => [
      { id: 7, session_id: "s", role: "assistant", title: "T", snippet: "a \u0002match\u0003 here" },
    ]);
    const hits = await createHistory({ select: select as SqlReader["select"] }).search('foo" OR 1', 10);
    const [sql, binds] = select.mock.calls[0] as unknown as [string, unknown[]];
    expect(sql).toMatch(/chat_fts MATCH \$1/);
    expect(binds?.[0]).toBe('"foo""" "OR" "1"');
    expect(hits[0]).toMatchObject({ messageId: 7, sessionId: "s" });
  });

  it("does not query for an empty search", async () => {
    const select = vi.fn();
    expect(await createHistory({ select: select as SqlReader["select"] }).search("   ")).toEqual([]);
    expect(select).not.toHaveBeenCalled();
  });

  it("splits snippets into marked runs", () => {
    expect(snippetRuns("x \u0002a\u0003 y \u0002b\u0003")).toEqual([
      { text: "x ", match: false },
      { text: "a", match: true },
      { text: " y ", match: false },
      { text: "b", match: true },
    ]);
  });

  it("labels untitled sessions by their first message", () => {
    expect(sessionLabel({ title: "", preview: "  What is\nRust?  " })).toBe("What is Rust?");
    expect(sessionLabel({ title: "Named", preview: "x" })).toBe("Named");
    expect(sessionLabel({ title: " ", preview: "" })).toBe("New chat");
  });
});
