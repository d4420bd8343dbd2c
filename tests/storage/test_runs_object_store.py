"""Analysis runs with the media store in a bucket (moto's S3 server over HTTP): the worker and
the web server share nothing but the database, the broker and the bucket (two MEDIA_ROOTs).

The web server is pytest-django's live server, talked to over real HTTP; result files answer
presigned redirects that `requests` follows to the object store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from analyses import storage
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures
from tests.storage.runs_helpers import (
    analysis_queue,
    published_library,
    run_as_worker,
    sha256,
    start_bucket_cluster,
)
from tests.worker.conftest import demo, wait_final  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def library(owner: Any, demo: dict[str, Any], media_bucket: str, settings: Any) -> dict[str, Any]:
    return published_library(owner=owner, demo=demo, settings=settings)


def _keys(store: ObjectStore, bucket: str, prefix: str) -> list[str]:
    return store.keys(bucket, prefix)


def _heatmap(analysis: Any) -> dict[str, Any]:
    return next(record for record in analysis.manifest["files"] if record["role"] == "heatmap_video")


def test_an_analysis_run_by_a_worker_machine_serves_its_files_from_the_bucket_by_presigned_redirects(
    web: Any,
    owner: Any,
    stranger: Any,
    library: dict[str, Any],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    worker_root = tmp_path / "worker-machine"
    cluster = start_bucket_cluster(
        store=object_store, bucket=media_bucket, worker_root=worker_root, log_path=tmp_path / "qcluster.log"
    )
    try:
        analysis = analysis_queue(owner=owner, library=library)
        wait_final(analysis, timeout=300, cluster=cluster)
    finally:
        cluster.stop()
    assert analysis.status == "succeeded", (analysis.error_message, cluster.log())
    assert Path(settings.MEDIA_ROOT) != worker_root
    stored = _keys(object_store, media_bucket, analysis.results_dir + "/")
    assert f"{analysis.results_dir}/manifest.json" in stored
    # The worker dropped its copy of the published results; the web server never had one.
    assert not (worker_root / analysis.results_dir).exists()
    assert not storage.media_local_path(analysis.results_dir).exists()

    record = _heatmap(analysis)
    url = f"/analyses/{analysis.code}/files/{record['path']}"
    assert web(stranger).get(url).status_code == 404
    redirect = web(owner).get(url)
    assert redirect.status_code == 302
    assert redirect.headers["Location"].startswith(object_store.endpoint_url)
    whole = requests.get(redirect.headers["Location"], timeout=30)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "video/mp4"
    assert sha256(whole.content) == record["sha256"]
    followed = web(owner).get(url, headers={"Range": "bytes=100-1099"}, allow_redirects=True)
    assert followed.status_code == 206
    assert followed.headers["Content-Range"] == f"bytes 100-1099/{record['bytes']}"
    assert followed.content == whole.content[100:1100]


def test_a_stored_input_missing_from_the_bucket_fails_the_run_in_words(
    owner: Any,
    library: dict[str, Any],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    storage.media_delete(names=[library["classifier"].file.name])
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert analysis.status == "failed"
    assert analysis.error_message == "The model file of this analysis is missing from the server."
    assert _keys(object_store, media_bucket, f"analyses/{analysis.code.hex}/") == []


def test_an_engine_failure_uploads_nothing(
    owner: Any,
    library: dict[str, Any],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    from analyses.models import Analysis

    analysis = analysis_queue(owner=owner, library=library)
    # A class the model does not have: the engine refuses the job (the form would have too).
    Analysis.objects.filter(pk=analysis.pk).update(expected_class=99)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert analysis.status == "failed" and analysis.error_message
    assert _keys(object_store, media_bucket, f"analyses/{analysis.code.hex}/") == []


def test_an_upload_interrupted_midway_leaves_no_object_of_the_attempt_and_fails_the_run(
    owner: Any,
    library: dict[str, Any],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_publish = storage.media_publish_file
    uploaded: list[str] = []

    def connection_lost_after_three(*, name: str) -> None:
        if len(uploaded) == 3:
            raise ConnectionError("the object store went away mid-upload")
        real_publish(name=name)
        uploaded.append(name)

    monkeypatch.setattr(storage, "media_publish_file", connection_lost_after_three)
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert len(uploaded) == 3  # some objects really were in the bucket
    assert analysis.status == "failed"
    assert analysis.error_message.startswith("The analysis finished but its results could not be saved")
    assert analysis.results_dir == ""
    assert _keys(object_store, media_bucket, f"analyses/{analysis.code.hex}/") == []


def test_a_publish_that_loses_the_compare_and_set_removes_its_uploaded_attempt(
    owner: Any,
    library: dict[str, Any],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from analyses.models import Analysis

    real_publish_tree = storage.media_publish_tree
    seen: dict[str, list[str]] = {}

    def cancelled_during_the_upload(*, prefix: str) -> list[str]:
        names = real_publish_tree(prefix=prefix)
        seen["uploaded"] = _keys(object_store, media_bucket, prefix + "/")
        # The owner cancels while the last object goes up: the row is no longer publishable.
        Analysis.objects.filter(status="running").update(cancel_requested=True)
        return names

    monkeypatch.setattr(storage, "media_publish_tree", cancelled_during_the_upload)
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert seen["uploaded"], "the attempt's objects were uploaded before the compare-and-set"
    assert analysis.status == "cancelled" and analysis.results_dir == ""
    assert _keys(object_store, media_bucket, f"analyses/{analysis.code.hex}/") == []


def test_deleting_an_analysis_removes_all_its_objects(
    web: Any,
    owner: Any,
    library: dict[str, Any],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message
    prefix = f"analyses/{analysis.code.hex}/"
    assert _keys(object_store, media_bucket, prefix)
    response = web(owner).post(f"/analyses/{analysis.code}/delete/")
    assert response.status_code == 302
    deadline = time.monotonic() + 10  # on_commit runs in the live server's request thread
    while _keys(object_store, media_bucket, prefix) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _keys(object_store, media_bucket, prefix) == []
    # The model and the video stay: only the analysis was deleted.
    assert _keys(object_store, media_bucket, library["classifier"].file.name)


def test_with_accel_delivery_a_result_file_answers_x_accel_redirect_and_no_body(
    web: Any,
    owner: Any,
    stranger: Any,
    library: dict[str, Any],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.MEDIA_DELIVERY = "accel"
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message
    url = f"/analyses/{analysis.code}/files/{_heatmap(analysis)['path']}"
    assert web(stranger).get(url).status_code == 404
    response = web(owner).get(url)
    assert response.status_code == 200
    target = response.headers["X-Accel-Redirect"]
    assert target.startswith(f"/_protected/s3/{settings.MEDIA_BUCKET}/{analysis.results_dir}/")
    assert "X-Amz-Signature=" in target
    assert response.content == b""


def test_a_worker_machine_trims_its_cache_after_each_analysis(
    owner: Any, library: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_CACHE_MB = 0  # nothing may stay cached once the analysis is done
    worker_root = tmp_path / "worker-machine"
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, worker_root)
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message
    cached = [path for path in worker_root.rglob("*") if path.is_file() and ".work" not in path.parts]
    assert cached == []
    # The inputs it downloaded are gone from this machine, still in the bucket.
    assert storage.media_exists(name=library["classifier"].file.name)
