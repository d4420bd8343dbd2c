"""End to end with a REAL django-q2 cluster (`manage.py qcluster` subprocess) and the real engine."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.worker.conftest import (
    demo_video_entry,
    make_video,
    wait_final,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _files_per_layer(manifest: dict[str, Any]) -> dict[str, Counter[str]]:
    per_layer: dict[str, Counter[str]] = {}
    for record in manifest["files"]:
        if record.get("layer"):
            per_layer.setdefault(record["layer"], Counter())[record["role"]] += 1
    return per_layer


def _submit(
    *, owner: Any, classifier: Any, video: Any, expected_class: int | None, params: dict | None = None
) -> Any:
    from analyses.runs.services import analysis_create

    return analysis_create(
        user=owner, classifier=classifier, video=video, expected_class=expected_class, params=params or {}
    )


def _work_folders(media_root: Path) -> list[str]:
    work = media_root / "analyses" / ".work"
    return sorted(path.name for path in work.iterdir()) if work.exists() else []


def test_wrong_and_right_predictions_submitted_together_both_succeed_with_inference_maps_only_when_wrong(
    owner: Any, demo: dict[str, Any], demo_classifier: Any, media_root: Path, start_cluster: Any
) -> None:
    cluster = start_cluster()
    mislabelled = demo_video_entry(demo, mislabelled=True)
    correct = demo_video_entry(demo, mislabelled=False)
    wrong_video = make_video(owner=owner, video_path=Path(mislabelled["path"]), media_root=media_root)
    right_video = make_video(owner=owner, video_path=Path(correct["path"]), media_root=media_root)

    wrong = _submit(
        owner=owner,
        classifier=demo_classifier,
        video=wrong_video,
        expected_class=mislabelled["labelled_class"],
    )
    right = _submit(
        owner=owner, classifier=demo_classifier, video=right_video, expected_class=correct["labelled_class"]
    )

    seen_progress: set[float] = set()
    wait_for(
        wrong,
        condition=lambda row: seen_progress.add(row.progress) or row.status in ("succeeded", "failed"),
        timeout=180,
        cluster=cluster,
    )
    wait_final(right, timeout=120, cluster=cluster)
    assert (wrong.status, wrong.error_message) == ("succeeded", "")
    assert (right.status, right.error_message) == ("succeeded", "")
    assert any(0 < value < 1 for value in seen_progress), f"no intermediate progress seen: {seen_progress}"

    frames = demo_classifier.input_shape[0]
    layers = demo_classifier.conv3d_layers
    for analysis, wrong_prediction in ((wrong, True), (right, False)):
        assert analysis.attempts == 1
        assert analysis.progress == 1.0
        assert analysis.is_wrong_prediction is wrong_prediction
        assert analysis.predicted_class == analysis.manifest["prediction"]["predicted_class"]
        assert analysis.input_hashes["model"] and analysis.input_hashes["video"]
        assert analysis.versions.get("tensorflow") and analysis.timings.get("total", 0) > 0
        results = media_root / analysis.results_dir
        assert (results / "manifest.json").is_file()
        per_layer = _files_per_layer(analysis.manifest)
        assert sorted(per_layer) == sorted(layers)
        for layer in layers:
            assert per_layer[layer]["heatmap_image"] == frames
            assert per_layer[layer]["heatmap_video"] == 1
            assert per_layer[layer]["inference_map"] == (3 if wrong_prediction else 0)
        for record in analysis.manifest["files"]:
            assert (results / record["path"]).is_file(), record["path"]
    # The row says succeeded before the worker removes the job's working folder (in its
    # `finally`), so wait for the removal instead of racing it.
    deadline = time.monotonic() + 30
    while (
        any(not name.startswith("spare-") for name in _work_folders(media_root))
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert all(name.startswith("spare-") for name in _work_folders(media_root)), _work_folders(media_root)


def test_expected_class_out_of_range_fails_in_words_and_cancel_stops_a_running_analysis(
    owner: Any, demo: dict[str, Any], demo_classifier: Any, media_root: Path, start_cluster: Any
) -> None:
    from analyses.models import Analysis
    from analyses.runs.services import analysis_cancel

    cluster = start_cluster()
    video = make_video(
        owner=owner, video_path=Path(demo_video_entry(demo, mislabelled=False)["path"]), media_root=media_root
    )
    # The service refuses it; a row that got past it anyway (an older classifier record) is
    # refused by the engine, and the user reads why.
    bad = _submit(owner=owner, classifier=demo_classifier, video=video, expected_class=None)
    Analysis.objects.filter(pk=bad.pk).update(expected_class=99)
    wait_final(bad, cluster=cluster)
    assert bad.status == "failed"
    assert "99" in bad.error_message and "class" in bad.error_message
    assert "Traceback" not in bad.error_message

    running = _submit(owner=owner, classifier=demo_classifier, video=video, expected_class=None)
    wait_for(running, condition=lambda row: row.status == "running", timeout=60, cluster=cluster)
    analysis_cancel(user=owner, analysis=running)
    wait_final(running, timeout=30, cluster=cluster)
    assert running.status == "cancelled"
    assert not (media_root / "analyses" / running.code.hex).exists()


def _engine_pid_of(media_root: Path, analysis: Any, *, timeout: float = 30) -> int:
    """The pid of the engine running `analysis`. The row says `running` as soon as a worker
    claims it, BEFORE the worker hands the job to an engine (a warm spare renamed into the
    analysis's folder, or a fresh one whose pid file is written after it starts), so the pid
    file is waited for, not assumed."""
    pid_file = media_root / "analyses" / ".work" / f"{analysis.code.hex}-{analysis.attempts}" / "engine.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = pid_file.read_text()
        except FileNotFoundError:
            text = ""
        if text.strip():
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"no engine pid file at {pid_file} {timeout} s after the analysis started running")


def test_sigkilled_cluster_and_engine_mid_run_end_retried_to_success_never_running_forever(
    owner: Any, demo: dict[str, Any], demo_classifier: Any, media_root: Path, start_cluster: Any
) -> None:
    from analyses.reaper import reaper_schedule_ensure

    reaper_schedule_ensure()  # as run_studio does
    cluster = start_cluster()
    video = make_video(
        owner=owner, video_path=Path(demo_video_entry(demo, mislabelled=True)["path"]), media_root=media_root
    )
    analysis = _submit(owner=owner, classifier=demo_classifier, video=video, expected_class=None)
    wait_for(analysis, condition=lambda row: row.status == "running", timeout=60, cluster=cluster)
    engine_pid = _engine_pid_of(media_root, analysis)
    cluster.kill()
    try:
        os.kill(engine_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone with its worker (parent-death signal)
    analysis.refresh_from_db()
    assert analysis.status == "running"  # nobody is left to say otherwise

    replacement = start_cluster()
    wait_final(analysis, timeout=120, cluster=replacement)
    assert analysis.status in ("succeeded", "failed")
    if analysis.status == "succeeded":
        assert analysis.attempts == 2
    else:
        assert "stopped" in analysis.error_message


def test_memory_limit_fails_only_the_analysis_that_exceeds_it(
    owner: Any, demo: dict[str, Any], demo_classifier: Any, media_root: Path, start_cluster: Any
) -> None:
    # 256 MB (the lowest allowed) is below what TensorFlow alone needs: the engine is killed.
    cluster = start_cluster(GRADCAM_ANALYSIS_MEMORY_MB="256")
    video = make_video(
        owner=owner, video_path=Path(demo_video_entry(demo, mislabelled=False)["path"]), media_root=media_root
    )
    analysis = _submit(owner=owner, classifier=demo_classifier, video=video, expected_class=None)
    wait_final(analysis, timeout=90, cluster=cluster)
    assert analysis.status == "failed"
    assert "memory limit of 256 MB" in analysis.error_message
    assert cluster.process.poll() is None, "the cluster must survive its engine being killed"
    # The same worker goes on to the next analysis (it fails the same way here, by its own limit).
    second = _submit(owner=owner, classifier=demo_classifier, video=video, expected_class=None)
    wait_final(second, timeout=90, cluster=cluster)
    assert second.status == "failed" and "memory" in second.error_message
