// Read-only queries on the store's SQLite file through tauri-plugin-sql (the
// capability grants select only). Every write goes through a command.
import type { SessionSummary } from "../state";

/** What this module needs from plugin-sql's Database: `select` and nothing else. */
export interface SqlReader {
  select<T>(query: string, bindValues?: unknown[]): Promise<T>;
}

export interface SearchHit {
  messageId: number;
  sessionId: string;
  role: string;
  sessionTitle: string;
  /** Text with matches between U+0002 and U+0003 (see hearth-store). */
  snippet: string;
}

/** Words per query, as hearth-store caps it: more is a paste, not a search. */
const MAX_TERMS = 32;
/** FTS5's snippet() is quadratic in a message's matches; longer messages get a plain prefix. */
const FTS_SNIPPET_MAX_CHARS = 16 * 1024;
export const SNIPPET_START = "\u0002";
export const SNIPPET_END = "\u0003";

/**
 * The same sanitising as hearth-store's `fts5_query`: split on whitespace and
 * control characters, drop repeats case-insensitively, keep at most 32 words,
 * and quote every word (inner quotes doubled) so FTS5 operators and
 * punctuation are plain text. The words are ANDed. Null when nothing is left.
 */
export function fts5Query(text: string): string | null {
  const seen = new Set<string>();
  const terms: string[] = [];
  // eslint-disable-next-line no-control-regex
  for (const word of text.split(/[\s\p{Cc}]+/u)) {
    if (word === "") continue;
    const key = word.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    terms.push(`"${word.replace(/"/g, '""')}"`);
    if (terms.length === MAX_TERMS) break;
  }
  return terms.length > 0 ? terms.join(" ") : null;
}

interface SessionRow {
  id: string;
  title: string;
  updated_at: number;
  message_count: number;
  preview: string | null;
}

interface HitRow {
  id: number;
  session_id: string;
  role: string;
  title: string;
  snippet: string | null;
}

export interface History {
  listSessions(limit?: number): Promise<SessionSummary[]>;
  search(text: string, limit?: number): Promise<SearchHit[]>;
}

export function createHistory(db: SqlReader): History {
  return {
    async listSessions(limit = 200) {
      const rows = await db.select<SessionRow[]>(
        `SELECT s.id, s.title, s.updated_at, s.message_count,
                (SELECT substr(h.content, 1, 120) FROM chat_history h
                  WHERE h.session_id = s.id AND h.role = 'user' ORDER BY h.id LIMIT 1) AS preview
           FROM sessions s
          ORDER BY s.updated_at DESC, s.id DESC
          LIMIT $1`,
        [limit],
      );
      return rows.map((r) => ({
        id: r.id,
        title: r.title,
        updatedAt: Number(r.updated_at),
        messageCount: Number(r.message_count),
        preview: r.preview ?? "",
      }));
    },

    async search(text, limit = 50) {
      const query = fts5Query(text);
      if (query === null) return [];
      const rows = await db.select<HitRow[]>(
        `SELECT h.id, h.session_id, h.role, s.title,
                CASE WHEN length(h.content) <= $3
                     THEN snippet(chat_fts, 0, char(2), char(3), '…', 16)
                     ELSE substr(h.content, 1, 200) END AS snippet
           FROM chat_fts
           JOIN chat_history h ON h.id = chat_fts.rowid
           JOIN sessions s ON s.id = h.session_id
          WHERE chat_fts MATCH $1
          ORDER BY rank
          LIMIT $2`,
        [query, limit, FTS_SNIPPET_MAX_CHARS],
      );
      return rows.map((r) => ({
        messageId: Number(r.id),
        sessionId: r.session_id,
        role: r.role,
        sessionTitle: r.title,
        snippet: r.snippet ?? "",
      }));
    },

  };
}

/** Opens the store's database read-only through plugin-sql. */
export async function openHistory(dbPath: string): Promise<History> {
  const { default: Database } = await import("@tauri-apps/plugin-sql");
  const db = await Database.load(`sqlite:${dbPath}`);
  return createHistory(db);
}

/** Splits a snippet into plain and matched runs, for building DOM without innerHTML. */
export function snippetRuns(snippet: string): Array<{ text: string; match: boolean }> {
  const runs: Array<{ text: string; match: boolean }> = [];
  let rest = snippet;
  while (rest.length > 0) {
    const start = rest.indexOf(SNIPPET_START);
    if (start < 0) {
      runs.push({ text: rest, match: false });
      break;
    }
    if (start > 0) runs.push({ text: rest.slice(0, start), match: false });
    const end = rest.indexOf(SNIPPET_END, start + 1);
    const stop = end < 0 ? rest.length : end;
    runs.push({ text: rest.slice(start + 1, stop), match: true });
    rest = end < 0 ? "" : rest.slice(end + 1);
  }
  return runs;
}
