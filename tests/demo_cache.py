"""One demo build shared by every test session: the real `python -m demo` output, cached.

`python -m demo --out DIR` runs once into a cache folder keyed by a hash of the
generator and demo source code: any change to either file gives a fresh build, an unchanged
tree reuses it (training takes a minute or two on this CPU). A file lock stops two concurrent
sessions from building into the same folder. Override the folder with GRADCAM_TEST_DEMO_DIR.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_SOURCES = ("demo/synthetic.py", "demo/build.py")
BUILD_TIMEOUT_SECONDS = 900


def demo_cache_dir() -> Path:
    override = os.environ.get("GRADCAM_TEST_DEMO_DIR")
    if override:
        return Path(override)
    digest = hashlib.sha256()
    for relative in DEMO_SOURCES:
        digest.update((REPO_ROOT / relative).read_bytes())
    return Path(tempfile.gettempdir()) / f"gradcam3d-test-demo-{os.getuid()}" / digest.hexdigest()[:16]


def build_demo(*, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Run `python -m demo` as a child process; return its final JSON line (the contract's result)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f"{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        completed = subprocess.run(
            [sys.executable, "-m", "demo", "--out", str(out_dir), "--seed", str(seed)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    if completed.returncode != 0:
        raise AssertionError(
            f"python -m demo failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])
