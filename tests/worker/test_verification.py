"""Verify re-runs a past analysis with the real engine (in a sandboxed child, as in the worker)
into a scratch folder and compares its raw maps with the stored ones; the analysis and its
results are never touched.

The task bodies are called in this process (`verify_analysis_task` is what django-q2 calls);
the browser test drives the same through a real cluster.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from tests.worker.conftest import demo_video_entry, make_video

pytestmark = [pytest.mark.django_db]


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _work_folders(media_root: Path) -> list[str]:
    work = media_root / "analyses" / ".work"
    return sorted(path.name for path in work.iterdir()) if work.exists() else []


@pytest.fixture
def analysed(owner: Any, demo: dict[str, Any], demo_classifier: Any, media_root: Path) -> Any:
    """A real small analysis of a demo video (wrong prediction: inference maps too), succeeded."""
    from analyses.runs.services import analysis_create
    from analyses.tasks import run_analysis_task

    entry = demo_video_entry(demo, mislabelled=True)
    video = make_video(owner=owner, video_path=Path(entry["path"]), media_root=media_root)
    analysis = analysis_create(
        user=owner, classifier=demo_classifier, video=video, expected_class=entry["labelled_class"], params={}
    )
    assert run_analysis_task(analysis.pk) == "succeeded", analysis.error_message
    analysis.refresh_from_db()
    return analysis


def _verify(*, user: Any, analysis: Any) -> Any:
    from analyses.runs.verification import verification_request
    from analyses.tasks import verify_analysis_task

    verification = verification_request(user=user, analysis=analysis)
    assert verify_analysis_task(verification.pk) == "finished"
    verification.refresh_from_db()
    return verification


def _results(media_root: Path, analysis: Any) -> Path:
    return media_root / analysis.results_dir


@pytest.mark.slow
def test_verifying_a_real_analysis_gives_identical_maps_and_an_audit_event_and_touches_nothing(
    owner: Any, analysed: Any, media_root: Path
) -> None:
    from audit.models import AuditEvent

    before = _tree_hashes(_results(media_root, analysed))
    row_before = (analysed.manifest, analysed.results_dir, analysed.predicted_class)

    verification = _verify(user=owner, analysis=analysed)

    verdict = verification.verdict
    assert verification.status == "finished" and verification.progress == 1.0
    assert verdict["outcome"] == "identical", verdict
    layers = analysed.manifest["model"]["selected_layers"]
    assert [layer["layer"] for layer in verdict["layers"]] == layers
    assert all(layer["identical"] and layer["max_relative_diff"] == 0.0 for layer in verdict["layers"])
    assert verdict["versions_changed"] == [] and verdict["prediction"]["changed"] is False
    assert verdict["summary"].startswith("Identical")
    event = AuditEvent.objects.get(action="analysis.verified")
    assert event.actor_username == owner.username and event.target_code == analysed.code
    assert event.data["outcome"] == "identical" and event.data["verification"] == str(verification.code)
    # The analysis and its results are untouched; the scratch folder is gone.
    analysed.refresh_from_db()
    assert (analysed.manifest, analysed.results_dir, analysed.predicted_class) == row_before
    assert _tree_hashes(_results(media_root, analysed)) == before
    assert not [name for name in _work_folders(media_root) if name.startswith("verify-")]


@pytest.mark.slow
def test_tampered_stored_maps_differ_with_the_relative_difference_per_layer_and_class(
    owner: Any, analysed: Any, media_root: Path
) -> None:
    from gradcam3d.manifest import save_npz_deterministic

    records = [record for record in analysed.manifest["files"] if record["role"] == "raw_maps"]
    tampered_record = records[0]
    stored = _results(media_root, analysed) / tampered_record["path"]
    with np.load(stored, allow_pickle=False) as maps:
        arrays = {name: maps[name] for name in maps.files}
    # The stored raw map of class 0 scaled by 1.5: relative to the stored (reference) maximum,
    # the re-run differs by 0.5 / 1.5 of it. The manifest keeps the original SHA-256.
    arrays["raw_class0"] = arrays["raw_class0"] * np.float32(1.5)
    save_npz_deterministic(stored, arrays)

    verdict = _verify(user=owner, analysis=analysed).verdict

    assert verdict["outcome"] == "differs", verdict
    by_layer = {layer["layer"]: layer for layer in verdict["layers"]}
    changed = by_layer[tampered_record["layer"]]
    assert changed["identical"] is False and changed["stored_matches_record"] is False
    assert changed["recorded_sha256"] == tampered_record["sha256"] == changed["rerun_sha256"]
    classes = {entry["class"]: entry for entry in changed["classes"]}
    assert classes[0]["raw"] == pytest.approx(1 / 3, rel=1e-4)
    assert classes[0]["upsampled"] == 0.0
    assert all(entry["raw"] == 0.0 for index, entry in classes.items() if index != 0)
    assert changed["max_relative_diff"] == pytest.approx(1 / 3, rel=1e-4)
    assert all(layer["identical"] for name, layer in by_layer.items() if name != tampered_record["layer"])
    assert "no longer match the SHA-256 recorded" in verdict["summary"]


def _fabricated_succeeded(*, owner: Any, classifier: Any, video: Any, media_root: Path) -> Any:
    """A succeeded row whose recorded input hashes are those of its (placeholder) files now."""
    from analyses.models import Analysis

    hashes = {
        name: hashlib.sha256(Path(obj.file.path).read_bytes()).hexdigest()
        for name, obj in (("model", classifier), ("video", video))
    }
    return Analysis.objects.create(
        owner=owner,
        classifier=classifier,
        video=video,
        status="succeeded",
        results_dir="analyses/nowhere/attempt-1",
        input_hashes=hashes,
        manifest={
            "inputs": {name: {"sha256": digest, "bytes": 1} for name, digest in hashes.items()},
            "params": {"method": "gradcam"},
            "files": [],
        },
    )


def test_a_changed_input_file_is_named_in_the_verdict_and_nothing_is_run(
    owner: Any, classifier: Any, video: Any, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyses.runs import execution

    analysis = _fabricated_succeeded(owner=owner, classifier=classifier, video=video, media_root=media_root)
    with open(video.file.path, "ab") as handle:
        handle.write(b"one more byte")
    monkeypatch.setattr(execution.runner, "take_engine", _no_engine)

    verification = _verify(user=owner, analysis=analysis)

    verdict = verification.verdict
    assert verdict["outcome"] == "inputs_changed"
    assert verdict["changed_inputs"] == ["video"]
    assert verdict["inputs"]["model"]["changed"] is False
    assert verdict["inputs"]["video"]["now"] != verdict["inputs"]["video"]["recorded"]
    assert "original video file has changed" in verdict["summary"]


def _no_engine(**kwargs: Any) -> Any:
    raise AssertionError("no engine may run when an input changed")


def test_a_verification_whose_worker_died_is_failed_by_the_reaper(
    owner: Any, classifier: Any, video: Any, media_root: Path
) -> None:
    from analyses.models import Verification
    from analyses.reaper import reap_everything
    from analyses.worker.leases import current_worker_lease

    analysis = _fabricated_succeeded(owner=owner, classifier=classifier, video=video, media_root=media_root)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_lease = f"{current_worker_lease().split(':')[0]}:{int(finished.stdout)}:1"
    orphan = Verification.objects.create(
        analysis=analysis,
        requested_by=owner,
        status="running",
        worker_lease=dead_lease,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    alive = Verification.objects.create(
        analysis=_fabricated_succeeded(
            owner=owner, classifier=classifier, video=video, media_root=media_root
        ),
        requested_by=owner,
        status="running",
        worker_lease=current_worker_lease(),
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )

    assert reap_everything()["verifications_failed"] == 1

    orphan.refresh_from_db()
    alive.refresh_from_db()
    assert orphan.status == "failed" and "stopped responding" in orphan.error_message
    assert alive.status == "running"
    # A late write from the dead worker changes nothing any more.
    from analyses.runs.verification import verification_finish

    assert (
        verification_finish(verification_id=orphan.pk, lease=dead_lease, verdict={"outcome": "identical"})
        is False
    )
