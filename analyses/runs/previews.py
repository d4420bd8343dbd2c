"""Previews: the frames a model will see of a video with given preprocessing, before a run.

`preview_create` (in the request) checks that the user may see both the model and the video and
queues a worker job; `preview_build` (the worker) has the engine decode the video in a sandboxed
child into MEDIA_ROOT/previews/<owner pk>/<code hex>/ and stores the frame list on the row. A
preview is private to its owner, and only the latest few per user are kept.

With an object store (analyses.storage, MEDIA_BUCKET set) the worker fetches the video from
the store, publishes the clip before the row says the preview is ready (the web server that
serves it may be another machine), and removing a preview removes its objects.
"""

from __future__ import annotations

import logging
import stat as stat_module
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from analyses import storage
from analyses.library.models import Classifier, Preview, ProcessingStatus, Video
from analyses.library.processing import (
    processing_claim,
    processing_enqueue,
    processing_fail,
    processing_finish,
)
from analyses.library.selectors import classifiers_visible_to, videos_visible_to
from analyses.runs.params import AnalysisError, preprocess_params_normalise
from analyses.worker import engine_client

logger = logging.getLogger(__name__)

PREVIEW_FOLDER = "previews"
PREVIEW_CLIP_NAME = "preview.mp4"
PREVIEWS_KEPT_PER_USER = 3
_SWEEP_GRACE_SECONDS = 600


class PreviewError(Exception):
    """A user-facing refusal: `str(exc)` is a complete sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def preview_folder_name(preview: Preview) -> str:
    """The preview's folder as a storage name (relative to MEDIA_ROOT, a key prefix in the bucket)."""
    return f"{PREVIEW_FOLDER}/{int(preview.owner_id)}/{preview.code.hex}"


def preview_folder(preview: Preview) -> Path:
    return Path(settings.MEDIA_ROOT) / preview_folder_name(preview)


def preview_clip_name(preview: Preview) -> str:
    """The clip's name relative to MEDIA_ROOT."""
    return f"{preview_folder_name(preview)}/{PREVIEW_CLIP_NAME}"


def _remove_preview_files(prefix: str) -> None:
    """Remove a preview folder here and in the store; logged, never raised (cleanup paths and
    on-commit hooks: an unreachable bucket leaves an orphan for the sweep, not an error page)."""
    try:
        storage.media_delete_prefix(prefix=prefix)
    except Exception as exc:
        logger.warning("could not remove the preview files %s: %s", prefix, exc)


def _remove_older_previews(*, user: Any) -> None:
    stale = list(Preview.objects.filter(owner=user).order_by("-created_at", "-pk")[PREVIEWS_KEPT_PER_USER:])
    folders = [preview_folder_name(preview) for preview in stale]
    Preview.objects.filter(pk__in=[preview.pk for preview in stale]).delete()

    def remove_folders() -> None:
        for folder in folders:
            _remove_preview_files(folder)

    transaction.on_commit(remove_folders)


def preview_create(
    *, user: Any, classifier: Classifier, video: Video, preprocess: dict[str, Any] | None
) -> Preview:
    """Queue a preview of `video` as `classifier` would see it with the `preprocess` options.

    The user must be able to see both inputs now (archived ones included: a re-run previews
    the original's inputs): a preview returns frames of the video, so it is never a way around
    the video's own sharing.
    """
    if (
        not classifiers_visible_to(user=user, include_archived=True)
        .filter(pk=classifier.pk, status=ProcessingStatus.READY)
        .exists()
    ):
        raise PreviewError("That model does not exist or is not available to you.")
    if (
        not videos_visible_to(user=user, include_archived=True)
        .filter(pk=video.pk, status=ProcessingStatus.READY)
        .exists()
    ):
        raise PreviewError("That video does not exist or is not available to you.")
    try:
        preprocess = preprocess_params_normalise(classifier=classifier, value=preprocess)
    except AnalysisError as exc:
        raise PreviewError(exc.message) from None
    with transaction.atomic():
        preview = Preview.objects.create(
            owner=user,
            classifier=classifier,
            video=video,
            status=ProcessingStatus.PROCESSING,
            params={"input_shape": list(classifier.input_shape), "preprocess": dict(preprocess)},
            status_message="Waiting for a worker to decode the video.",
        )
        processing_enqueue(preview)
        _remove_older_previews(user=user)
    return preview


def _engine_options(preview: Preview) -> dict[str, Any]:
    options = {
        key: value for key, value in (preview.params.get("preprocess") or {}).items() if value is not None
    }
    options.update(engine_client.video_limits())
    return options


def _result_from_engine(raw: dict[str, Any], *, frame_limit: int) -> dict[str, Any]:
    """Only the fields the page shows, bounded and typed (the child's output is not trusted)."""
    indices = [int(value) for value in list(raw.get("source_frame_indices") or [])[:frame_limit]]
    times = [float(value) for value in list(raw.get("timestamps") or [])[:frame_limit]]
    input_range = raw.get("input_range")
    return {
        "frames": [
            {"index": position, "source_frame": source, "timestamp": round(time, 3)}
            for position, (source, time) in enumerate(zip(indices, times))
        ],
        "frame_count": len(indices),
        "source_fps": float(raw["source_fps"]) if raw.get("source_fps") is not None else None,
        "source_frame_count": int(raw.get("source_frame_count") or 0),
        "scaling": str(raw.get("scaling") or "")[:20],
        "input_range": [float(input_range[0]), float(input_range[1])]
        if isinstance(input_range, list) and len(input_range) == 2
        else None,
    }


def _preview_failed(preview: Preview, *, lease: str, message: str) -> str:
    """processing -> failed with `message`; whatever the child wrote is removed."""
    _remove_preview_files(preview_folder_name(preview))
    return ProcessingStatus.FAILED if processing_fail(obj=preview, lease=lease, message=message) else "gone"


def _clip_is_regular_file(preview: Preview) -> bool:
    # The child parsed an untrusted video: publish only a regular file it wrote, never a
    # symlink it may have planted (an upload would follow it and copy what it points at).
    try:
        mode = storage.media_local_path(preview_clip_name(preview)).lstat().st_mode
    except OSError:
        return False
    return stat_module.S_ISREG(mode)


def preview_build(*, preview_id: int) -> str:
    """The worker's job: decode the preview clip in a sandboxed child, then publish it and mark
    the preview ready. Returns the final status, or "skipped" / "gone" when the job is not (or
    no longer) ours."""
    lease = processing_claim(model=Preview, pk=preview_id)
    if lease is None:
        return "skipped"
    preview = Preview.objects.select_related("video", "classifier").get(pk=preview_id)
    input_shape = [int(size) for size in preview.params.get("input_shape") or []]
    unreadable = "The preview could not be read back from the engine; try again."
    try:
        # From the store: this worker may share no disk with the one that processed the video.
        video_path = storage.media_fetch(name=preview.video.file.name, size=preview.video.size_bytes)
    except storage.MediaMissing:
        message = "The video's file is missing from the server, so no preview can be made of it."
        return _preview_failed(preview, lease=lease, message=message)
    folder = preview_folder(preview)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        raw = engine_client.preview_clip(video_path, input_shape, _engine_options(preview), folder)
        result = _result_from_engine(raw, frame_limit=input_shape[0] if input_shape else 0)
    except engine_client.EngineError as exc:
        return _preview_failed(preview, lease=lease, message=exc.message)
    except (TypeError, ValueError, IndexError) as exc:
        logger.error("preview %s: unusable engine output: %s", preview_id, exc)
        return _preview_failed(preview, lease=lease, message=unreadable)
    if not _clip_is_regular_file(preview):
        logger.error("preview %s: the engine left no regular clip file", preview_id)
        return _preview_failed(preview, lease=lease, message=unreadable)
    try:
        # Published before the row says "ready": the web server serving it may be elsewhere.
        storage.media_publish_file(name=preview_clip_name(preview))
    except Exception as exc:
        logger.error("preview %s: the clip could not be stored: %s", preview_id, exc)
        return _preview_failed(preview, lease=lease, message="The preview could not be stored; try again.")
    if processing_finish(obj=preview, lease=lease, fields={"result": result}):
        storage.media_drop_local_copy(names=[preview_folder_name(preview)])
        return ProcessingStatus.READY
    _remove_preview_files(preview_folder_name(preview))  # replaced by a newer preview meanwhile
    return "gone"


def _live_previews() -> set[tuple[str, str]]:
    return {(str(owner), code.hex) for owner, code in Preview.objects.values_list("owner_id", "code")}


def previews_sweep() -> int:
    """Remove preview folders whose row is gone (replaced previews, deleted videos): on this
    machine, and in the object store when there is one; returns how many."""
    removed = 0
    root = Path(settings.MEDIA_ROOT) / PREVIEW_FOLDER
    if root.is_dir():
        live = _live_previews()
        # A folder this young may belong to a preview created after the query above.
        young = time.time() - _SWEEP_GRACE_SECONDS
        for user_folder in (path for path in root.iterdir() if path.is_dir() and not path.is_symlink()):
            for folder in (path for path in user_folder.iterdir() if path.is_dir() and not path.is_symlink()):
                if (user_folder.name, folder.name) not in live and folder.stat().st_mtime < young:
                    _remove_preview_files(f"{PREVIEW_FOLDER}/{user_folder.name}/{folder.name}")
                    removed += 1
    if storage.store_is_remote():
        removed += _sweep_stored_previews()
    return removed


def _sweep_stored_previews() -> int:
    """The object store's side of the sweep: its preview "folders" are key prefixes, aged by
    their newest object."""
    live = _live_previews()
    young = time.time() - _SWEEP_GRACE_SECONDS
    removed = 0
    for owner in storage.media_stored_folders(prefix=PREVIEW_FOLDER):
        for code in storage.media_stored_folders(prefix=f"{PREVIEW_FOLDER}/{owner}"):
            prefix = f"{PREVIEW_FOLDER}/{owner}/{code}"
            if (owner, code) in live:
                continue
            newest = storage.media_newest_modified(prefix=prefix)
            if newest is not None and newest >= young:
                continue
            _remove_preview_files(prefix)
            removed += 1
    return removed
