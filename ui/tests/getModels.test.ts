import { describe, expect, it, vi } from "vitest";
import { ApiError, type DownloadProgressView, type ModelView, type RemoteFileView } from "../src/api";
import { createGetModelsPage, downloadWords } from "../src/models/getModels";

const REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";

const file = (over: Partial<RemoteFileView> = {}): RemoteFileView => ({
  repo: REPO,
  file: "SmolLM2-135M-Instruct-Q4_1.gguf",
  sizeBytes: 98_362_432,
  quantization: "Q4_1",
  badge: "cpu",
  fit: "CPU only",
  reason: "no GPU: everything on the CPU",
  recommended: true,
  installed: false,
  headerBytesRead: 1_048_576,
  ...over,
});

const installed: ModelView = {
  name: "SmolLM2-135M-Instruct-Q4_1.gguf",
  source: "hearth",
  path: "/models/SmolLM2-135M-Instruct-Q4_1.gguf",
  sizeBytes: 98_362_432,
  architecture: "llama",
  quantization: "Q4_1",
  contextLength: 8192,
  hasChatTemplate: true,
  fit: "cpu_only: no GPU",
  measured: null,
};

function setup(files: RemoteFileView[] = [file(), file({ file: "x-F16.gguf", badge: "tooLarge", recommended: false })]) {
  let progress: ((p: DownloadProgressView) => void) | null = null;
  let finish: ((m: ModelView) => void) | null = null;
  let fail: ((e: unknown) => void) | null = null;
  const api = {
    searchModels: vi.fn(async (_q: string) => [{ id: REPO, downloads: 1234, likes: 5 }]),
    repoFiles: vi.fn(async (_repo: string) => files),
    downloadModel: vi.fn(
      (_repo: string, _file: string, onProgress: (p: DownloadProgressView) => void) =>
        new Promise<ModelView>((resolve, reject) => {
          progress = onProgress;
          finish = resolve;
          fail = reject;
        }),
    ),
    cancelDownload: vi.fn(async () => {
      fail?.(new ApiError("cancelled", "the download was stopped; run it again to resume"));
    }),
    recommendedModels: vi.fn(async (): Promise<RemoteFileView[]> => [
      file({ repo: "bartowski/SmolLM2-135M-Instruct-GGUF" }),
      file({ repo: "o/other", file: "o-Q4_K_M.gguf", recommended: false }),
    ]),
    discardDownload: vi.fn(async (_file: string) => {}),
  };
  const onInstalled = vi.fn();
  const notify = vi.fn();
  // The page needs only these four calls of the api.
  const page = createGetModelsPage(api as never, onInstalled, notify);
  document.body.replaceChildren(page.el);
  const q = <T extends HTMLElement = HTMLElement>(id: string) => page.el.querySelector<T>(`[data-testid="${id}"]`)!;
  const all = (id: string) => [...page.el.querySelectorAll<HTMLElement>(`[data-testid="${id}"]`)];
  return {
    api,
    page,
    onInstalled,
    notify,
    q,
    all,
    progress: (p: DownloadProgressView) => progress!(p),
    finish: (m: ModelView) => finish!(m),
  };
}

const at = (done: number, over: Partial<DownloadProgressView> = {}): DownloadProgressView => ({
  file: "SmolLM2-135M-Instruct-Q4_1.gguf",
  doneBytes: done,
  totalBytes: 98_362_432,
  bytesPerSec: 10_000_000,
  etaSecs: (98_362_432 - done) / 10_000_000,
  resumedFrom: 0,
  ...over,
});

describe("download words", () => {
  it("says how much, how fast and how long", () => {
    expect(downloadWords(at(39_344_972))).toMatch(/ of .* · .*\/s · 6 s left$/);
    expect(downloadWords(at(0, { bytesPerSec: 0, etaSecs: null }))).not.toContain("left");
    expect(downloadWords(at(50_000_000, { resumedFrom: 39_344_972 }))).toContain("resumed from");
  });
});

describe("get models page", () => {
  it("lists repositories, then a repository's files with their fit for this machine", async () => {
    const { api, page, q, all } = setup();
    await page.search("smol");
    expect(api.searchModels).toHaveBeenCalledWith("smol");
    expect(all("hub-repo").map((b) => b.textContent)).toEqual([REPO]);
    all("hub-repo")[0]!.click();
    await vi.waitFor(() => expect(all("hub-file")).toHaveLength(2));
    expect(api.repoFiles).toHaveBeenCalledWith(REPO);
    const badges = all("fit-badge");
    expect(badges.map((b) => b.dataset.badge)).toEqual(["cpu", "tooLarge"]);
    expect(badges[0]!.textContent).toBe("CPU only");
    expect(badges[0]!.title).toBe("no GPU: everything on the CPU");
    expect(all("hub-file")[0]!.textContent).toContain("Recommended");
    expect(all("hub-file")[1]!.textContent).not.toContain("Recommended");
    expect(q("hub-status").textContent).toBe("");
  });

  it("downloads with a moving progress bar and hands the model on", async () => {
    const { api, page, q, all, progress, finish, onInstalled } = setup();
    await page.search("");
    all("hub-repo")[0]!.click();
    await vi.waitFor(() => expect(all("hub-download")).toHaveLength(2));
    all("hub-download")[0]!.click();
    expect(api.downloadModel).toHaveBeenCalledWith(REPO, "SmolLM2-135M-Instruct-Q4_1.gguf", expect.any(Function));
    expect(q("download-stop").hidden).toBe(false);
    progress(at(39_344_972));
    expect(q<HTMLProgressElement>("download-progress").value).toBeCloseTo(0.4, 2);
    expect(q("download-progress-text").textContent).toContain("6 s left");
    progress(at(98_362_432));
    finish(installed);
    await vi.waitFor(() => expect(onInstalled).toHaveBeenCalledWith(installed));
    expect(q<HTMLProgressElement>("download-progress").value).toBe(1);
    expect(q("download-stop").hidden).toBe(true);
    expect(all("hub-download")).toHaveLength(1);
  });

  it("stopping keeps what arrived and offers to resume", async () => {
    const { api, page, q, all, progress, onInstalled } = setup();
    await page.search("");
    all("hub-repo")[0]!.click();
    await vi.waitFor(() => expect(all("hub-download")).toHaveLength(2));
    const button = all("hub-download")[0]! as HTMLButtonElement;
    button.click();
    progress(at(39_344_972));
    q("download-stop").click();
    expect(api.cancelDownload).toHaveBeenCalled();
    await vi.waitFor(() => expect(button.textContent).toBe("Resume"));
    expect(button.disabled).toBe(false);
    expect(q("download-progress-text").textContent).toContain("Download again to resume");
    expect(onInstalled).not.toHaveBeenCalled();
    expect(q("download-discard").hidden).toBe(false);
    q("download-discard").click();
    await vi.waitFor(() => expect(api.discardDownload).toHaveBeenCalledWith("SmolLM2-135M-Instruct-Q4_1.gguf"));
    await vi.waitFor(() => expect(button.textContent).toBe("Download"));
    expect(q("download-discard").hidden).toBe(true);
  });

  it("recommends models for this machine, the first one a button away", async () => {
    const { api, page, q, all } = setup();
    await page.recommend();
    expect(q("hub-recommended").hidden).toBe(false);
    expect(all("hub-pick")).toHaveLength(2);
    all("hub-get")[0]!.click();
    expect(api.downloadModel).toHaveBeenCalledWith(
      "bartowski/SmolLM2-135M-Instruct-GGUF",
      "SmolLM2-135M-Instruct-Q4_1.gguf",
      expect.any(Function),
    );
    api.recommendedModels.mockResolvedValueOnce([]);
    await page.recommend();
    expect(all("hub-pick")).toHaveLength(0);
  });

  it("says what went wrong", async () => {
    const { api, page, q, all, notify } = setup();
    api.searchModels.mockRejectedValueOnce(new ApiError("downloads_off", "downloads are turned off"));
    await page.search("x");
    expect(q("hub-status").textContent).toBe("downloads are turned off");
    await page.search("");
    all("hub-repo")[0]!.click();
    await vi.waitFor(() => expect(all("hub-download")).toHaveLength(2));
    api.downloadModel.mockRejectedValueOnce(new ApiError("disk_full", "needs 0.10 GB free"));
    all("hub-download")[0]!.click();
    await vi.waitFor(() => expect(notify).toHaveBeenCalledWith("needs 0.10 GB free"));
  });
});
