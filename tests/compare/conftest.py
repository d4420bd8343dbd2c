"""Fixtures of the comparison tests: REAL engine output for several analyses of the demo model.

`python -m gradcam3d analyze` runs once per session for each kind of column the comparison page
must handle: Grad-CAM and Grad-CAM++ on the same mislabelled clip (same frames, same map size:
a difference row), Grad-CAM on the other clip (another video: no difference row) and the same
at 8 fps instead of 4 (another frame rate: aligned by source timestamp). Each test copies the
results into its own MEDIA_ROOT as succeeded analyses (as the worker's publish step sets them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.web.test_analysis_pages import library, media_root, publish_result  # noqa: F401 - fixtures
from tests.worker.conftest import demo, demo_video_entry, run_engine_cli  # noqa: F401 - fixtures

RUNS = {
    # name: (mislabelled clip?, extra analyze options)
    "gradcam": (True, []),
    "gradcampp": (True, ["--method", "gradcam++"]),
    "other_video": (False, []),
    "other_video_8fps": (False, ["--fps", "8"]),
}


@pytest.fixture(scope="session")
def compare_results(demo: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("compare-results")
    classmap = Path(demo["model_path"]).parent / demo["classmap"]
    results: dict[str, Any] = {}
    for name, (mislabelled, extra) in RUNS.items():
        entry = demo_video_entry(demo, mislabelled=mislabelled)
        out = root / name
        run_engine_cli(
            "analyze",
            str(demo["model_path"]),
            entry["path"],
            "--out",
            str(out),
            "--expected-class",
            str(entry["labelled_class"]),
            "--labels",
            str(classmap),
            *extra,
        )
        results[name] = {
            "dir": out,
            "entry": entry,
            "manifest": json.loads((out / "manifest.json").read_text()),
        }
    return results


@pytest.fixture
def published(
    owner: Any,
    team: Any,
    library: dict[str, Any],
    compare_results: dict[str, Any],
    media_root: Path,  # noqa: F811
) -> dict[str, Any]:
    """The four runs as succeeded analyses of `owner`, shared with `team`, titled by their name."""
    from analyses.models import Analysis

    analyses = {}
    for name, result in compare_results.items():
        video = library["wrong_video"] if RUNS[name][0] else library["right_video"]
        analysis = publish_result(
            owner=owner,
            team=team,
            classifier=library["classifier"],
            video=video,
            result=result,
            media_root=media_root,
        )
        params = dict(result["manifest"]["params"])
        Analysis.objects.filter(pk=analysis.pk).update(
            title=name, params=params, method=params.get("method", "")
        )
        analysis.refresh_from_db()
        analyses[name] = analysis
    return analyses
