"""Previews with an object store (moto's real S3 server, over HTTP): the worker decodes the video
fetched from the bucket, publishes the clip, and the web (another machine) serves it by a
presigned redirect; replaced and orphaned previews lose their objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from analyses import storage
from analyses.library.models import Classifier, Preview, ProcessingStatus, Video
from analyses.runs import previews
from tests.jobs import run_queued_tasks
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures
from tests.storage.test_library_object_store import _other_machine, _upload_then_process_elsewhere
from tests.web.library_factories import model_files, video_files  # noqa: F401 - fixtures
from tests.web.test_analysis_pages import _form_fields

pytestmark = pytest.mark.django_db(transaction=True)


def _preview_rows(owner: Any) -> tuple[Classifier, Video]:
    """A ready model and video (rows only: these tests never decode them)."""
    classifier = Classifier.objects.create(
        owner=owner,
        name="Rows only",
        file="classifiers/rows-only.h5",
        original_filename="m.h5",
        file_format="h5",
        sha256="a" * 64,
        size_bytes=1,
        input_shape=[4, 16, 16, 3],
        num_classes=3,
        conv3d_layers=["conv3d_a"],
    )
    video = Video.objects.create(
        owner=owner,
        name="Rows only",
        file="videos/rows-only.mp4",
        original_filename="v.mp4",
        sha256="b" * 64,
        size_bytes=1,
    )
    return classifier, video


def _published_preview(*, owner: Any, classifier: Classifier, video: Video) -> Preview:
    preview = Preview.objects.create(
        owner=owner, classifier=classifier, video=video, status=ProcessingStatus.READY
    )
    clip = storage.media_local_path(previews.preview_clip_name(preview))
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"clip")
    storage.media_publish_file(name=previews.preview_clip_name(preview))
    storage.media_drop_local_copy(names=[previews.preview_folder_name(preview)])
    return preview


def test_a_preview_is_decoded_from_the_bucket_and_its_clip_is_a_presigned_redirect(
    web: Any,
    owner: Any,
    stranger: Any,
    model_files: dict[str, Path],
    video_files: dict[str, Path],
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    client = web(owner)
    model_code = _upload_then_process_elsewhere(
        client, kind="model", path=model_files["good_h5"], settings=settings, tmp_path=tmp_path / "model"
    )
    video_code = _upload_then_process_elsewhere(
        client, kind="video", path=video_files["avi"], settings=settings, tmp_path=tmp_path / "video"
    )
    response = client.post(
        "/analyses/new/",
        data=_form_fields(classifier=model_code, video=video_code, action="preview"),
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 202, response.text[:3000]
    queued = response.json()
    _other_machine(settings, tmp_path, "preview-worker")
    run_queued_tasks()
    _other_machine(settings, tmp_path, "web-3")
    status = client.get(queued["status_url"]).json()
    assert status["status"] == "ready", status
    preview = Preview.objects.get()
    assert previews.preview_clip_name(preview) in object_store.keys(media_bucket, prefix="previews/")
    outsider = web(stranger).get(status["clip_url"])
    assert outsider.status_code == 404
    redirect = client.get(status["clip_url"])
    assert redirect.status_code == 302 and "X-Amz-Signature=" in redirect.headers["Location"]
    clip = requests.get(redirect.headers["Location"], timeout=30)
    assert clip.status_code == 200 and clip.headers["Content-Type"] == "video/mp4"
    assert clip.content[4:8] == b"ftyp"
    part = requests.get(redirect.headers["Location"], headers={"Range": "bytes=4-7"}, timeout=30)
    assert part.status_code == 206 and part.content == b"ftyp"


def test_a_preview_of_a_video_missing_from_the_bucket_fails_with_a_reason(
    owner: Any, media_bucket: str
) -> None:
    classifier, video = _preview_rows(owner)
    preview = previews.preview_create(user=owner, classifier=classifier, video=video, preprocess=None)
    assert previews.preview_build(preview_id=preview.pk) == ProcessingStatus.FAILED
    preview.refresh_from_db()
    assert preview.status == ProcessingStatus.FAILED and "missing" in preview.status_message
    assert preview.processing_lease == ""


def test_a_replaced_preview_loses_its_objects(
    owner: Any, media_bucket: str, object_store: ObjectStore
) -> None:
    classifier, video = _preview_rows(owner)
    kept = [_published_preview(owner=owner, classifier=classifier, video=video) for _ in range(3)]
    oldest = kept[0]
    previews.preview_create(user=owner, classifier=classifier, video=video, preprocess=None)
    assert not Preview.objects.filter(pk=oldest.pk).exists()
    assert object_store.keys(media_bucket, prefix="previews/") == sorted(
        previews.preview_clip_name(preview) for preview in kept[1:]
    )


def test_the_preview_sweep_removes_objects_whose_row_is_gone(
    owner: Any, media_bucket: str, object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier, video = _preview_rows(owner)
    live = _published_preview(owner=owner, classifier=classifier, video=video)
    orphan = _published_preview(owner=owner, classifier=classifier, video=video)
    Preview.objects.filter(pk=orphan.pk).delete()
    # Within the grace period an orphan may be a preview created after the sweep's query.
    assert previews.previews_sweep() == 0
    monkeypatch.setattr(previews, "_SWEEP_GRACE_SECONDS", -3600)
    assert previews.previews_sweep() == 1
    assert object_store.keys(media_bucket, prefix="previews/") == [previews.preview_clip_name(live)]
