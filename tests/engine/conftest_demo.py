"""The `demo_bundle` fixture: the real offline demo (trained model + sample videos).

It runs the real command line, `python -m demo --out DIR`, once per test
session, in a cache folder shared between sessions, keyed by a hash of the generator and demo
source code: any change to either file gives a fresh build, and an unchanged tree reuses
the demo (training takes about a minute on this CPU). A file lock stops two concurrent
sessions from building into the same folder. Override the folder with GRADCAM_TEST_DEMO_DIR.

Register it for all engine tests by adding to tests/engine/conftest.py:
    from tests.engine.conftest_demo import demo_bundle  # noqa: F401
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.demo_cache import REPO_ROOT, build_demo, demo_cache_dir  # noqa: F401 - re-exported for tests


@pytest.fixture(scope="session")
def demo_bundle() -> dict[str, Any]:
    """demo.json's content with absolute paths (model, classmap, videos[*].path), plus
    `root` (the folder) and `cli_result` (what `python -m demo` printed).

    Each video entry has name, true_class, labelled_class, description, fps, frame_count,
    width, height and `boxes`: the moving object's (x, y, w, h) in every source frame.
    """
    out_dir = demo_cache_dir()
    cli_result = build_demo(out_dir=out_dir)
    demo = json.loads((out_dir / "demo.json").read_text())
    root = out_dir.resolve()
    return {
        **demo,
        "root": str(root),
        "model": str(root / demo["model"]),
        "classmap": str(root / demo["classmap"]),
        "videos": [{**video, "path": str(root / video["path"])} for video in demo["videos"]],
        "cli_result": cli_result,
    }
