"""README.md's "Use the engine from Python" example runs as it is written, against the real demo."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest_demo import REPO_ROOT, demo_bundle  # noqa: F401

README = REPO_ROOT / "README.md"
SECTION = "## Use the engine from Python"


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of the README's section on using the engine from Python."""
    section = markdown.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.slow
def test_the_use_it_from_python_example_runs_on_the_demo(
    demo_bundle: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 2
    # The example reads the demo from var/demo, as `make run` builds it.
    (tmp_path / "var").mkdir()
    os.symlink(demo_bundle["root"], tmp_path / "var" / "demo")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    assert "[16, 32, 32, 3]" in printed
    manifest = namespace["manifest"]
    assert manifest["params"]["method"] == "gradcam++" and manifest["params"]["expected_class"] == 0
    assert manifest["params"]["class_labels"][0] == "moving right"
    assert (tmp_path / "analysis-mislabelled" / "manifest.json").is_file()
    assert namespace["heatmap_videos"] and all(path.endswith(".mp4") for path in namespace["heatmap_videos"])
    assert namespace["last_layer_map"].ndim == 3
