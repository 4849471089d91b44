"""Benchmark of the desktop app as a user runs it: memory of the whole process tree
and the tokens/s the window receives. Prints JSON lines; asserts nothing.

Run by `make bench-desktop` (the real app under Xvfb, driven through WebDriver, like
the end-to-end tests). Memory is PSS (proportional set size: shared pages split
between the processes that map them) summed over the app, its WebKit processes and
the engine worker, from /proc/PID/smaps_rollup. WebDriver's own processes are not
part of the app's tree and are not counted.
"""

import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_desktop import APP, Desktop  # noqa: E402

SETTLE_S = 5.0
LONG_PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a map. Use many paragraphs."


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The name is in parentheses and may hold spaces: the ppid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(root: int) -> list[int]:
    tree = children_of()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def app_pid(driver_pid: int) -> int:
    """The hearth-app process WebKitWebDriver started (below tauri-driver)."""
    app = os.path.realpath(APP)
    for pid in descendants(driver_pid):
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == app:
                return pid
        except OSError:
            continue
    raise RuntimeError(f"no {app} process below tauri-driver {driver_pid}")


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def name_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def tree_memory(root: int) -> dict:
    """PSS of `root` and everything below it, sampled for SETTLE_S; the last sample."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        per = {}
        for pid in descendants(root):
            kib = pss_kib(pid)
            if kib:
                key = f"{name_of(pid)}[{pid}]"
                per[key] = round(kib / 1024, 1)
        if time.monotonic() >= deadline:
            return {"pss_mb": round(sum(per.values()), 1), "processes": per}
        time.sleep(0.5)


def write_ui_settings(data_dir: Path, **values) -> None:
    config = data_dir / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "ui-settings.json").write_text(json.dumps(values))


def engine_decode_tps(data_dir: Path) -> list[float]:
    """The engine's own decode rates of the saved replies, oldest first."""
    db = sqlite3.connect(f"file:{data_dir / 'hearth.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT metadata FROM chat_history WHERE role = 'assistant' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    return [json.loads(m)["metrics"]["decode_tps"] for (m,) in rows]


def measure_idle_without_model(root: Path) -> None:
    data, empty_models = root / "idle", root / "no-models"
    empty_models.mkdir(parents=True)
    app = Desktop(data, models_dir=empty_models)
    try:
        app.find("composer")  # the window is up and the UI has rendered
        pid = app_pid(app.driver_proc.pid)
        print(json.dumps({"bench": "desktop_memory", "state": "idle_without_model", **tree_memory(pid)}), flush=True)
    finally:
        app.close()


def measure_with_model(root: Path, replies: int) -> None:
    data = root / "loaded"
    write_ui_settings(data, temperature=0.0, topP=0.95, maxTokens=512)
    app = Desktop(data)
    try:
        app.ready()
        pid = app_pid(app.driver_proc.pid)
        print(json.dumps({"bench": "desktop_memory", "state": "model_loaded_idle", **tree_memory(pid)}), flush=True)
        delivered = []
        for i in range(replies):
            app.send(LONG_PROMPT if i == 0 else "Go on with the story.")
            app.wait_reply_done(i + 1)
            badge = app.replies()[-1].find_element("css selector", '[data-testid="badge"]')
            delivered.append(float(badge.get_attribute("data-delivered-tps")))
        print(json.dumps({"bench": "desktop_memory", "state": "model_loaded_after_replies", **tree_memory(pid)}), flush=True)
    finally:
        app.close()
    engine = engine_decode_tps(data)
    runs = [
        {"engine_decode_tps": round(e, 2), "ui_tps": round(u, 2), "ui_vs_engine": round(u / e, 4)}
        for e, u in zip(engine, delivered)
    ]
    print(
        json.dumps(
            {
                "bench": "desktop_ui_tps",
                "replies": len(runs),
                "runs": runs,
                "median_ui_vs_engine": round(statistics.median(r["ui_vs_engine"] for r in runs), 4),
            }
        ),
        flush=True,
    )


def main() -> int:
    if not (APP and Path(APP).exists()):
        print("HEARTH_APP is not set to the built app: run `make bench-desktop`", file=sys.stderr)
        return 2
    replies = int(os.environ.get("HEARTH_BENCH_REPLIES", "3"))
    root = Path(tempfile.mkdtemp(prefix="hearth-bench-desktop-"))
    try:
        measure_idle_without_model(root)
        measure_with_model(root, replies)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
