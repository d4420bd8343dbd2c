"""Verifying an analysis with the media store in a bucket: the worker that re-runs it may be
another machine than the one that ran it; the published maps and the inputs are read from the
bucket, never from a cached copy that may predate a change of the stored objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures
from tests.storage.runs_helpers import analysis_queue, published_library, run_as_worker, worker_machine
from tests.worker.conftest import demo  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def succeeded(owner: Any, demo: dict[str, Any], media_bucket: str, settings: Any, tmp_path: Path) -> Any:
    library = published_library(owner=owner, demo=demo, settings=settings)
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "first-worker")
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message
    return analysis


def _verify(*, owner: Any, analysis: Any, settings: Any, root: Path) -> dict[str, Any]:
    from analyses.runs.verification import verification_request
    from analyses.tasks import verify_analysis_task

    verification = verification_request(user=owner, analysis=analysis)
    with worker_machine(settings, root):
        assert verify_analysis_task(verification.pk) == "finished"
    verification.refresh_from_db()
    return dict(verification.verdict)


def test_verifying_on_another_worker_machine_reads_the_published_maps_from_the_bucket(
    owner: Any, succeeded: Any, settings: Any, tmp_path: Path
) -> None:
    verdict = _verify(owner=owner, analysis=succeeded, settings=settings, root=tmp_path / "second-worker")
    assert verdict["outcome"] == "identical", verdict
    assert [layer["layer"] for layer in verdict["layers"]] == succeeded.manifest["model"]["selected_layers"]


def test_a_stored_map_changed_in_the_bucket_is_found_even_when_a_copy_is_cached(
    owner: Any, succeeded: Any, media_bucket: str, object_store: ObjectStore, settings: Any, tmp_path: Path
) -> None:
    machine = tmp_path / "second-worker"
    assert _verify(owner=owner, analysis=succeeded, settings=settings, root=machine)["outcome"] == "identical"
    record = next(item for item in succeeded.manifest["files"] if item["role"] == "raw_maps")
    key = f"{succeeded.results_dir}/{record['path']}"
    assert (machine / key).is_file()  # the first verification left a cached copy on this machine
    original = object_store.client().get_object(Bucket=media_bucket, Key=key)["Body"].read()
    tampered = original[:-16] + bytes(16)  # the same size: a size check alone would not notice
    object_store.client().put_object(Bucket=media_bucket, Key=key, Body=tampered)
    verdict = _verify(owner=owner, analysis=succeeded, settings=settings, root=machine)
    assert verdict["outcome"] == "differs"
    layer = next(item for item in verdict["layers"] if item["layer"] == record["layer"])
    assert layer["stored_sha256"] != layer["recorded_sha256"]
    assert layer["stored_matches_record"] is False
