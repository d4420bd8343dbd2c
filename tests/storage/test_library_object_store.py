"""The model and video libraries with an object store (moto's real S3 server, over HTTP).

Web server and worker share nothing but the database, the broker and the bucket: each test
uploads through the real pages (live server), then switches MEDIA_ROOT to another empty folder
before running the worker job (tests.jobs), and to a third one before downloading, so nothing
can cross through a shared disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from analyses.models import Classifier, Video
from tests.jobs import run_queued_tasks
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures
from tests.web.library_factories import (  # noqa: F401 - fixtures
    code_from_location,
    media_files,
    model_files,
    upload_model,
    upload_video,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _other_machine(settings: Any, tmp_path: Path, name: str) -> Path:
    """From now on this process is another machine: its MEDIA_ROOT is a new, empty folder."""
    root = tmp_path / name
    root.mkdir(parents=True)
    settings.MEDIA_ROOT = str(root)
    return root


def _upload_then_process_elsewhere(
    client: Any, *, kind: str, path: Path, settings: Any, tmp_path: Path, **fields: Any
) -> str:
    """Upload on the "web" machine, process on the "worker" one, come back on a third; the code."""
    upload = upload_model if kind == "model" else upload_video
    response = upload(client, path, process=False, **fields)
    assert response.status_code == 302, response.text[:3000]
    # Nothing of the upload stays on the web server: the worker can only get it from the bucket.
    assert media_files(Path(settings.MEDIA_ROOT)) == []
    worker_root = _other_machine(settings, tmp_path, "worker")
    run_queued_tasks()
    _other_machine(settings, tmp_path, "web-2")
    assert not [p for p in media_files(worker_root) if p.suffix == ".pending"]
    return code_from_location(response, prefix="/classifiers/" if kind == "model" else "/videos/")


def _object_bytes(store: ObjectStore, bucket: str, key: str) -> bytes:
    return bytes(store.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _follow_presigned(client: Any, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 302, response.text[:2000]
    assert response.headers["Cache-Control"] == "private, no-store"
    location = str(response.headers["Location"])
    assert "X-Amz-Signature=" in location
    return location


def test_an_uploaded_model_is_published_before_its_job_and_inspected_by_another_machine(
    web: Any,
    owner: Any,
    model_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    response = upload_model(client, model_files["good_h5"], process=False, name="Tiny")
    assert response.status_code == 302, response.text[:3000]
    classifier = Classifier.objects.get()
    # The pending upload is in the bucket when the job is queued, not on the web's disk.
    assert object_store.keys(media_bucket) == [classifier.file.name]
    assert classifier.file.name.endswith(".pending")
    assert media_files(Path(settings.MEDIA_ROOT)) == []
    _other_machine(settings, tmp_path, "worker")
    run_queued_tasks()
    classifier.refresh_from_db()
    assert (classifier.status, classifier.num_classes) == ("ready", 3), classifier.status_message
    assert classifier.file.name.endswith(".h5")
    # The final name replaced the pending one in the bucket.
    assert object_store.keys(media_bucket) == [classifier.file.name]
    assert (
        _object_bytes(object_store, media_bucket, classifier.file.name) == model_files["good_h5"].read_bytes()
    )


def test_an_uploaded_video_is_transcoded_by_another_machine_and_its_outputs_are_published(
    web: Any,
    owner: Any,
    video_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    code = _upload_then_process_elsewhere(
        client, kind="video", path=video_files["avi"], settings=settings, tmp_path=tmp_path
    )
    video = Video.objects.get(code=code)
    assert (video.status, video.frame_count) == ("ready", 20), video.status_message
    assert object_store.keys(media_bucket) == sorted(
        [video.file.name, video.rendition.name, video.poster.name]
    )
    assert video.file.name.endswith(".avi")
    assert _object_bytes(object_store, media_bucket, video.file.name) == video_files["avi"].read_bytes()
    rendition = _object_bytes(object_store, media_bucket, video.rendition.name)
    assert rendition[4:8] == b"ftyp"
    assert video.derived_bytes == len(rendition) + len(
        _object_bytes(object_store, media_bucket, video.poster.name)
    )


def test_rendition_poster_and_original_are_presigned_redirects_that_serve_the_bytes_and_ranges(
    web: Any,
    owner: Any,
    video_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    code = _upload_then_process_elsewhere(
        client, kind="video", path=video_files["avi"], settings=settings, tmp_path=tmp_path
    )
    video = Video.objects.get(code=code)
    rendition = _object_bytes(object_store, media_bucket, video.rendition.name)
    for path, expected, media_type in (
        (f"/videos/{code}/rendition.mp4", rendition, "video/mp4"),
        (
            f"/videos/{code}/poster.jpg",
            _object_bytes(object_store, media_bucket, video.poster.name),
            "image/jpeg",
        ),
        (f"/videos/{code}/original/", video_files["avi"].read_bytes(), "application/octet-stream"),
    ):
        location = _follow_presigned(client, path)
        whole = requests.get(location, timeout=30)
        assert whole.status_code == 200 and whole.content == expected, path
        assert whole.headers["Content-Type"] == media_type
        part = requests.get(location, headers={"Range": "bytes=4-11"}, timeout=30)
        assert part.status_code == 206 and part.content == expected[4:12], path
    original = requests.get(_follow_presigned(client, f"/videos/{code}/original/"), timeout=30)
    assert original.headers["Content-Disposition"].startswith("attachment")
    assert "clip.avi" in original.headers["Content-Disposition"]
    # Served by the bucket: this web server downloaded nothing.
    assert media_files(Path(settings.MEDIA_ROOT)) == []


def test_the_model_file_download_is_a_presigned_redirect_to_the_uploaded_bytes(
    web: Any,
    owner: Any,
    model_files: dict[str, Path],
    media_bucket: str,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    code = _upload_then_process_elsewhere(
        client, kind="model", path=model_files["good_h5"], settings=settings, tmp_path=tmp_path
    )
    location = _follow_presigned(client, f"/classifiers/{code}/file/")
    download = requests.get(location, timeout=30)
    assert download.status_code == 200
    assert download.content == model_files["good_h5"].read_bytes()
    assert "tiny_c3d.h5" in download.headers["Content-Disposition"]
    api = client.get(f"/api/v1/classifiers/{code}/file/")
    assert api.status_code == 302 and "X-Amz-Signature=" in api.headers["Location"]


def test_a_stranger_gets_404_on_every_stored_file_of_the_library(
    web: Any,
    owner: Any,
    stranger: Any,
    model_files: dict[str, Path],
    video_files: dict[str, Path],
    media_bucket: str,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    model_code = _upload_then_process_elsewhere(
        client, kind="model", path=model_files["good_h5"], settings=settings, tmp_path=tmp_path
    )
    video_code = _upload_then_process_elsewhere(
        client, kind="video", path=video_files["avi"], settings=settings, tmp_path=tmp_path / "2"
    )
    outsider = web(stranger)
    for path in (
        f"/classifiers/{model_code}/file/",
        f"/api/v1/classifiers/{model_code}/file/",
        f"/videos/{video_code}/rendition.mp4",
        f"/videos/{video_code}/poster.jpg",
        f"/videos/{video_code}/original/",
        f"/api/v1/videos/{video_code}/rendition.mp4",
        f"/api/v1/videos/{video_code}/poster.jpg",
        f"/api/v1/videos/{video_code}/original/",
    ):
        response = outsider.get(path)
        assert response.status_code == 404, path
        assert "X-Amz-Signature" not in response.headers.get("Location", "")


@pytest.mark.parametrize("delivery", ["accel", "django"])
def test_the_video_files_are_delivered_by_nginx_or_django_from_the_bucket(
    delivery: str,
    web: Any,
    owner: Any,
    video_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    code = _upload_then_process_elsewhere(
        client, kind="video", path=video_files["avi"], settings=settings, tmp_path=tmp_path
    )
    video = Video.objects.get(code=code)
    settings.MEDIA_DELIVERY = delivery
    response = client.get(f"/videos/{code}/rendition.mp4", headers={"Range": "bytes=0-9"})
    if delivery == "accel":
        assert response.status_code == 200 and response.content == b""
        assert response.headers["X-Accel-Redirect"].startswith(
            f"/_protected/s3/{media_bucket}/{video.rendition.name}?"
        )
    else:  # a development set-up: Django downloads into its cache and streams, Range included
        rendition = _object_bytes(object_store, media_bucket, video.rendition.name)
        assert response.status_code == 206 and response.content == rendition[:10]
    original = client.get(f"/videos/{code}/original/")
    assert original.status_code == 200
    assert original.headers["Content-Disposition"].startswith("attachment")


def test_deleting_a_video_removes_its_objects(
    web: Any,
    owner: Any,
    video_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    code = _upload_then_process_elsewhere(
        client, kind="video", path=video_files["avi"], settings=settings, tmp_path=tmp_path
    )
    assert len(object_store.keys(media_bucket)) == 3
    response = client.post(f"/videos/{code}/delete/")
    assert response.status_code == 302
    assert not Video.objects.exists()
    assert object_store.keys(media_bucket) == []


def test_deleting_a_model_removes_its_object(
    web: Any,
    owner: Any,
    model_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    code = _upload_then_process_elsewhere(
        client, kind="model", path=model_files["good_h5"], settings=settings, tmp_path=tmp_path
    )
    assert len(object_store.keys(media_bucket)) == 1
    response = client.post(f"/classifiers/{code}/delete/")
    assert response.status_code == 302
    assert not Classifier.objects.exists()
    assert object_store.keys(media_bucket) == []


def test_a_refused_upload_leaves_no_object(
    web: Any,
    owner: Any,
    video_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    code = _upload_then_process_elsewhere(
        client, kind="video", path=video_files["text_as_mp4"], settings=settings, tmp_path=tmp_path
    )
    video = Video.objects.get(code=code)
    assert (video.status, video.file.name) == ("failed", "")
    assert object_store.keys(media_bucket) == []


def test_an_upload_missing_from_the_bucket_is_refused_not_left_processing(
    web: Any,
    owner: Any,
    model_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    response = upload_model(client, model_files["good_h5"], process=False, name="Lost")
    assert response.status_code == 302, response.text[:3000]
    classifier = Classifier.objects.get()
    object_store.client().delete_object(Bucket=media_bucket, Key=classifier.file.name)
    _other_machine(settings, tmp_path, "worker")
    run_queued_tasks()
    classifier.refresh_from_db()
    assert classifier.status == "failed"
    assert "missing" in classifier.status_message
    assert classifier.processing_lease == ""


def test_an_upload_whose_row_is_not_created_leaves_no_object(
    owner: Any,
    model_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from analyses.library import services

    def audit_fails(**kwargs: Any) -> None:
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(services, "audit_log", audit_fails)
    with model_files["good_h5"].open("rb") as handle, pytest.raises(RuntimeError):
        services.classifier_create(owner=owner, team=None, uploaded_file=handle, name="Half")
    assert not Classifier.objects.exists()
    assert object_store.keys(media_bucket) == []
