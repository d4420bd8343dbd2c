"""README.md's "Use the API from a script" example runs exactly as it is written: against a live
server, with a REAL django-q2 worker cluster processing the uploads and the analysis, the demo
model and its mislabelled video, authenticated with a personal API token made by the token
service (as the account page makes them)."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.worker.conftest import REPO, demo, media_root, module_media_root, start_cluster  # noqa: F401 - fixtures

README = REPO / "README.md"
SECTION = "## Use the API from a script"

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of the README's section on using the API from a script."""
    section = markdown.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_api_example_is_one_python_block_with_timeouts_and_status_checks() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1
    code = blocks[0]
    calls = re.findall(r"api\.(?:get|post)\(", code)
    assert calls and code.count("timeout=") >= len(calls), "every request in the example has a timeout"
    assert code.count("raise_for_status()") >= len(calls), "every response in the example is checked"
    assert 'os.environ["GRADCAM_TOKEN"]' in code and "Bearer " in code


def test_the_readme_api_example_uploads_analyses_and_downloads_the_zip_through_a_real_worker(
    owner: Any,
    demo: dict[str, Any],  # noqa: F811
    media_root: Path,  # noqa: F811
    start_cluster: Any,  # noqa: F811
    live_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from accounts.tokens import api_token_create
    from analyses.models import Analysis, Classifier, Video

    _token, secret = api_token_create(user=owner, name="README example", expires_in_days=1)
    # The example reads the demo from var/demo, as `make run` builds it.
    (tmp_path / "var").mkdir()
    os.symlink(Path(demo["model_path"]).parent, tmp_path / "var" / "demo")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADCAM_URL", live_server.url)
    monkeypatch.setenv("GRADCAM_TOKEN", str(secret))
    cluster = start_cluster()

    (block,) = python_blocks(README.read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {"__name__": "readme_api_example"}
    try:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    except Exception as exc:
        raise AssertionError(
            f"the README's API example failed: {exc!r}\n--- worker log ---\n{cluster.log()}"
        ) from exc

    analysis = Analysis.objects.get(code=namespace["analysis"]["code"])
    assert (analysis.owner, analysis.status, analysis.expected_class) == (owner, "succeeded", 0)
    assert analysis.classifier == Classifier.objects.get(owner=owner, status="ready")
    assert analysis.video == Video.objects.get(owner=owner, status="ready")
    # The mislabelled clip is predicted "moving left", not the expected "moving right": the ZIP
    # has its inference maps along with the heatmaps and the manifest.
    assert analysis.predicted_class != 0
    with zipfile.ZipFile(tmp_path / "analysis.zip") as archive:
        names = archive.namelist()
        assert archive.testzip() is None
    assert any(name.endswith("manifest.json") for name in names)
    assert any("/inference/" in name for name in names) and any(
        name.endswith("heatmap.mp4") for name in names
    )
    assert f"{analysis.code} succeeded" in capsys.readouterr().out
