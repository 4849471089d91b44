// The Get models page: search Hugging Face (or the mirror HF_ENDPOINT names) for GGUF
// repositories, see each file of one judged for this machine (read from its header
// before any download), and download one with a progress bar. Stopping keeps what
// arrived: the same Download button then resumes it.
import { toApiError, type Api, type DownloadProgressView, type ModelView, type RemoteFileView } from "../api";
import { clear, h, on } from "../dom";
import { formatBytes } from "../format";

const BADGE_WORDS: Record<RemoteFileView["badge"], string> = {
  gpu: "Fits on GPU",
  partialGpu: "Partly on GPU",
  cpu: "CPU only",
  tooLarge: "Too large",
  unknown: "Unknown",
};

/** "40.0 MB of 98.4 MB · 12.3 MB/s · 5 s left" */
export function downloadWords(p: DownloadProgressView): string {
  const parts = [`${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}`];
  if (p.bytesPerSec > 0) parts.push(`${formatBytes(p.bytesPerSec)}/s`);
  if (p.etaSecs !== null) parts.push(`${Math.ceil(p.etaSecs)} s left`);
  if (p.resumedFrom > 0) parts.push(`resumed from ${formatBytes(p.resumedFrom)}`);
  return parts.join(" · ");
}

export interface GetModelsPage {
  el: HTMLElement;
  /** Lists repositories for `query` (the most downloaded GGUF ones when empty). */
  search: (query: string) => Promise<void>;
  /** Shows the two or three models the planner says suit this machine best. */
  recommend: () => Promise<void>;
}

export function createGetModelsPage(
  api: Api,
  onInstalled: (model: ModelView) => void,
  notify: (message: string) => void,
): GetModelsPage {
  const query = h("input", {
    type: "search",
    placeholder: "Search Hugging Face, e.g. qwen3 8b",
    "aria-label": "Search models",
    "data-testid": "hub-query",
  });
  const searchButton = h("button", { type: "button", text: "Search", "data-testid": "hub-search" });
  const status = h("div", { class: "help", role: "status", "data-testid": "hub-status" });
  const repos = h("ul", { class: "hub-repos", "data-testid": "hub-repos" });
  const filesTitle = h("h3", { hidden: true });
  const files = h("table", { class: "hub-files", "data-testid": "hub-files", hidden: true });
  const bar = h("progress", { max: 1, value: 0, hidden: true, "data-testid": "download-progress" });
  const barText = h("div", { class: "help", "data-testid": "download-progress-text" });
  const stop = h("button", { type: "button", text: "Stop", hidden: true, "data-testid": "download-stop" });
  const discard = h("button", { type: "button", text: "Discard", hidden: true, "data-testid": "download-discard" });
  const recommended = h("div", { class: "hub-recommended", "data-testid": "hub-recommended", hidden: true });
  let downloading = false;
  let stopped: RemoteFileView | null = null;

  async function recommend(): Promise<void> {
    try {
      const picks = await api.recommendedModels();
      clear(recommended);
      if (picks.length === 0) return;
      recommended.append(h("h3", { text: "Recommended for this machine" }));
      for (const f of picks) {
        const get = h("button", {
          type: "button",
          class: f.recommended ? "primary" : "",
          text: `Get ${f.file}`,
          "data-testid": "hub-get",
        });
        on(get, "click", () => void download(f, get));
        recommended.append(
          h(
            "div",
            { class: "row", "data-testid": "hub-pick" },
            get,
            h("span", { class: "help", text: ` ${f.repo} · ${formatBytes(f.sizeBytes)} · ` }),
            h("span", { class: `badge fit-${f.badge}`, title: f.reason, text: BADGE_WORDS[f.badge] }),
          ),
        );
      }
      recommended.hidden = false;
    } catch {
      // Recommendations are extra: the search below still works, and says what is wrong.
    }
  }

  async function search(text: string): Promise<void> {
    status.textContent = "Searching…";
    clear(repos);
    try {
      const found = await api.searchModels(text);
      status.textContent = found.length === 0 ? `No GGUF repositories match “${text}”.` : "";
      for (const repo of found) {
        const item = h(
          "li",
          {},
          h("button", { type: "button", class: "link-button", "data-testid": "hub-repo", text: repo.id }),
          h("span", { class: "help", text: ` ${repo.downloads.toLocaleString()} download${repo.downloads === 1 ? "" : "s"}` }),
        );
        on(item.querySelector("button") as HTMLButtonElement, "click", () => void showRepo(repo.id));
        repos.append(item);
      }
    } catch (e) {
      status.textContent = toApiError(e).message;
    }
  }

  async function showRepo(repo: string): Promise<void> {
    status.textContent = `Reading the files of ${repo} and judging each for this machine…`;
    filesTitle.textContent = repo;
    filesTitle.hidden = false;
    files.hidden = true;
    try {
      const list = await api.repoFiles(repo);
      status.textContent = list.length === 0 ? `${repo} has no GGUF model files.` : "";
      renderFiles(list);
    } catch (e) {
      status.textContent = toApiError(e).message;
    }
  }

  function renderFiles(list: RemoteFileView[]): void {
    clear(files);
    files.append(
      h("tr", {}, h("th", { text: "File" }), h("th", { text: "Size" }), h("th", { text: "Here" }), h("th", {})),
    );
    for (const f of list) {
      const badge = h("span", {
        class: `badge fit-${f.badge}`,
        "data-testid": "fit-badge",
        "data-badge": f.badge,
        title: f.reason,
        text: BADGE_WORDS[f.badge],
      });
      const action = f.installed
        ? h("span", { class: "help", text: "Installed" })
        : h("button", { type: "button", text: "Download", "data-testid": "hub-download" });
      if (action instanceof HTMLButtonElement) on(action, "click", () => void download(f, action));
      files.append(
        h(
          "tr",
          { "data-testid": "hub-file", "data-file": f.file },
          h("td", {}, f.file, f.recommended ? h("span", { class: "badge recommended", text: "Recommended" }) : null),
          h("td", { text: formatBytes(f.sizeBytes) }),
          // The verdict's own words only where they say more than the badge ("20 of 33 layers on GPU").
          h("td", {}, badge, f.fit.toLowerCase() === BADGE_WORDS[f.badge].toLowerCase() ? null : h("div", { class: "help", text: f.fit })),
          h("td", {}, action),
        ),
      );
    }
    files.hidden = false;
  }

  async function download(f: RemoteFileView, button: HTMLButtonElement): Promise<void> {
    if (downloading) return;
    downloading = true;
    button.disabled = true;
    bar.hidden = false;
    stop.hidden = false;
    discard.hidden = true;
    stopped = null;
    bar.value = 0;
    barText.textContent = `Starting ${f.file}…`;
    try {
      const model = await api.downloadModel(f.repo, f.file, (p) => {
        bar.value = p.totalBytes > 0 ? p.doneBytes / p.totalBytes : 0;
        barText.textContent = downloadWords(p);
      });
      bar.value = 1;
      barText.textContent = `Saved ${model.name}`;
      button.replaceWith(h("span", { class: "help", text: "Installed" }));
      onInstalled(model);
    } catch (e) {
      const err = toApiError(e);
      if (err.code === "cancelled") {
        barText.textContent = `Stopped: ${formatBytes(Math.round(bar.value * f.sizeBytes))} kept. Download again to resume.`;
        button.textContent = "Resume";
        stopped = f;
        discard.hidden = false;
      } else {
        barText.textContent = "";
        notify(err.message);
      }
      button.disabled = false;
    } finally {
      downloading = false;
      stop.hidden = true;
    }
  }

  on(searchButton, "click", () => void search(query.value));
  on(query, "keydown", (e) => {
    if (e.key === "Enter") void search(query.value);
  });
  on(stop, "click", () => void api.cancelDownload());
  on(discard, "click", () => {
    const f = stopped;
    if (!f) return;
    api
      .discardDownload(f.file)
      .then(() => {
        stopped = null;
        discard.hidden = true;
        bar.hidden = true;
        barText.textContent = `Discarded what was kept of ${f.file}.`;
        for (const b of files.querySelectorAll<HTMLButtonElement>('[data-testid="hub-download"]')) {
          if (b.textContent === "Resume") b.textContent = "Download";
        }
      })
      .catch((e: unknown) => notify(toApiError(e).message));
  });

  const el = h(
    "section",
    { class: "panel get-models", "data-testid": "get-models", hidden: true },
    h("h2", { text: "Get models" }),
    h(
      "p",
      { class: "help" },
      "Models come from Hugging Face (HF_ENDPOINT names a mirror). Each file is judged for this machine from its header before you download it. Nothing is fetched until you ask.",
    ),
    recommended,
    h("div", { class: "row" }, query, searchButton),
    status,
    repos,
    filesTitle,
    files,
    h("div", { class: "download" }, bar, stop, discard, barText),
  );
  return { el, search, recommend };
}
