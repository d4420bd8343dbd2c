"""Worker jobs on uploads (inspect a model, transcode a video, build a preview): claimed by
compare-and-set, never left `processing` forever when a worker dies, and harmless when the
upload is deleted meanwhile."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from analyses.models import Classifier, ProcessingStatus, Video
from tests.jobs import queued_task_names, run_queued_tasks
from tests.web.library_factories import model_files, video_files  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


def _upload_model(owner: Any, path: Path) -> Classifier:
    from django.core.files import File

    from analyses.library.services import classifier_create

    with path.open("rb") as handle:
        return classifier_create(owner=owner, team=None, uploaded_file=File(handle, name=path.name), name="m")


def _upload_video(owner: Any, path: Path) -> Video:
    from django.core.files import File

    from analyses.library.services import video_create

    with path.open("rb") as handle:
        return video_create(owner=owner, team=None, uploaded_file=File(handle, name=path.name), name="v")


def test_a_job_is_claimed_once_and_a_second_delivery_is_skipped(
    owner: Any, media: Path, model_files: dict[str, Path]
) -> None:
    from analyses.library.services import classifier_process

    classifier = _upload_model(owner, model_files["good_h5"])
    assert classifier_process(classifier_id=classifier.pk) == "ready"
    assert classifier_process(classifier_id=classifier.pk) == "skipped"
    classifier.refresh_from_db()
    assert (classifier.status, classifier.processing_attempts, classifier.processing_lease) == (
        "ready",
        1,
        "",
    )


def test_a_job_whose_worker_died_is_retried_once_then_given_up_in_words(
    owner: Any, media: Path, model_files: dict[str, Path]
) -> None:
    from analyses.library.processing import MAX_PROCESSING_ATTEMPTS, processing_reap

    classifier = _upload_model(owner, model_files["good_h5"])
    run_queued_tasks()  # (the job runs and succeeds; now simulate a worker dying on a new upload)
    dying = _upload_model(owner, model_files["other_h5"])
    dead_lease = "this-host-is-gone:1:1"
    long_ago = timezone.now() - timedelta(hours=2)
    Classifier.objects.filter(pk=dying.pk).update(
        processing_lease=dead_lease, processing_started_at=long_ago, processing_attempts=1
    )
    counts = processing_reap()
    assert counts["requeued"] == 1
    dying.refresh_from_db()
    assert (dying.status, dying.processing_lease) == ("processing", "")
    assert f"classifier-{dying.pk}" in queued_task_names()
    run_queued_tasks()
    dying.refresh_from_db()
    assert dying.status == "ready" and dying.processing_attempts == 2
    # A job that died on its last attempt is failed, with a sentence, its file removed.
    third = _upload_model(owner, model_files["truncated"])
    Classifier.objects.filter(pk=third.pk).update(
        processing_lease=dead_lease,
        processing_started_at=long_ago,
        processing_attempts=MAX_PROCESSING_ATTEMPTS,
    )
    assert processing_reap()["failed"] == 1
    third.refresh_from_db()
    assert third.status == "failed" and "stopped" in third.status_message and "again" in third.status_message
    assert classifier.pk != third.pk


def test_a_processing_job_whose_task_the_broker_lost_is_queued_again(
    owner: Any, media: Path, video_files: dict[str, Path], settings: Any
) -> None:
    from django_q.models import OrmQ

    from analyses.library.processing import processing_reap

    video = _upload_video(owner, video_files["mp4"])
    OrmQ.objects.all().delete()  # the broker lost it
    Video.objects.filter(pk=video.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert processing_reap()["enqueued_again"] == 1
    assert queued_task_names() == [f"video-{video.pk}"]
    run_queued_tasks()
    video.refresh_from_db()
    assert video.status == ProcessingStatus.READY


def test_deleting_an_upload_while_it_is_processed_leaves_no_file(
    owner: Any, media: Path, video_files: dict[str, Path]
) -> None:
    from analyses.library.services import video_delete, video_process

    video = _upload_video(owner, video_files["avi"])
    assert video_delete(video=video, actor=owner) == "deleted"
    assert video_process(video_id=video.pk) == "skipped"
    assert not Video.objects.exists()
    assert [path for path in media.rglob("*") if path.is_file()] == []


def test_a_row_deleted_after_its_job_was_claimed_ends_gone_with_its_outputs_removed(
    owner: Any, media: Path, video_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyses.library import services as library

    video = _upload_video(owner, video_files["avi"])
    real_transcode = library._transcode_or_refuse

    def transcode_then_deleted(**kwargs: Any) -> Any:
        probe = real_transcode(**kwargs)
        Video.objects.filter(pk=video.pk).delete()  # the owner deleted it while it was converting
        return probe

    monkeypatch.setattr(library, "_transcode_or_refuse", transcode_then_deleted)
    assert library.video_process(video_id=video.pk) == "gone"
    # Nothing names the renamed original, the browser copy or the poster any more: all removed.
    assert [path for path in media.rglob("*") if path.is_file()] == []
