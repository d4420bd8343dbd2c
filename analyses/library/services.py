"""Classifier and video libraries: upload, then inspect/probe in a worker, store, edit, delete.

An upload request only streams the file to MEDIA_ROOT/tmp while it is hashed and its size
checked against the upload limit and the owner's storage quota, moves it to a generated name
(`classifiers/<uuid hex>.pending`) and records a `processing` row; it answers at once. A worker
task then has the file inspected (models) or probed and transcoded (videos) by the engine in a
sandboxed child process (`classifier_process`, `video_process`), renames it to its final name
(`classifiers/<uuid hex>.h5`, `videos/<uuid hex>.mp4`) and marks the row ready, or refused with
the reason, removing the file. No failure path leaves a file behind.

With an object store (analyses.storage, MEDIA_BUCKET set) the web server and the worker share
no disk: every stored file (the pending upload, the final original, the rendition and poster)
is published to the bucket before a row names it or a job that reads it is queued; the worker
fetches its input from the store, and removing a file removes its object too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

import gradcam3d.classmap as class_map_grammar
from accounts.models import Team
from accounts.selectors import user_is_team_member
from analyses import storage
from analyses.library.models import Classifier, ProcessingStatus, Video
from analyses.library.processing import (
    processing_claim,
    processing_enqueue,
    processing_fail,
    processing_finish,
)
from analyses.quota import storage_use
from analyses.worker import engine_client
from audit.log import audit_log

# A library entry that analyses use: deleted, or archived while analyses still refer to it.
_LibraryT = TypeVar("_LibraryT", Classifier, Video)

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1024 * 1024


# --------------------------------------------------------------------------- errors
class LibraryError(Exception):
    """A user-facing refusal: `str(exc)` is a complete sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UploadRefused(LibraryError):
    """The uploaded file is not acceptable; nothing was stored."""


class InvalidClassMap(LibraryError):
    """The class map text cannot be read or does not fit the model."""


class InvalidTeam(LibraryError):
    """The chosen team is not one of the user's teams."""


class DuplicateUpload(LibraryError):
    """The same owner already uploaded a file with this sha256; `existing` is that object."""

    def __init__(self, existing: Classifier | Video) -> None:
        kind = "model" if isinstance(existing, Classifier) else "video"
        super().__init__(f"You already uploaded this {kind} as “{existing.name}”.")
        self.existing = existing


# --------------------------------------------------------------------------- file helpers
def media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def _tmp_dir() -> Path:
    directory = media_root() / "tmp"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _remove_quietly(*paths: Path | None) -> None:
    for path in paths:
        if path is None:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # never mask the original error with a cleanup error
            logger.warning("could not remove %s: %s", path, exc)


@dataclass
class StagedUpload:
    path: Path
    sha256: str
    size_bytes: int
    original_filename: str


def _clean_original_filename(uploaded_file: Any) -> str:
    # Kept only as data for display; never used to build a path.
    name = os.path.basename(str(getattr(uploaded_file, "name", "") or "upload")).strip()
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)
    return (name or "upload")[:255]


def _iter_chunks(uploaded_file: Any) -> Iterable[bytes]:
    if hasattr(uploaded_file, "chunks"):
        yield from uploaded_file.chunks(_CHUNK_BYTES)
        return
    while True:
        chunk = uploaded_file.read(_CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def stage_upload(
    *, uploaded_file: Any, max_bytes: int, kind: str, quota_left_bytes: int | None = None
) -> StagedUpload:
    """Copy the upload to MEDIA_ROOT/tmp, hashing it and refusing it past `max_bytes` or past
    what is left of the owner's storage quota (whichever comes first)."""
    target = _tmp_dir() / f"{uuid.uuid4().hex}.upload"
    digest = hashlib.sha256()
    size = 0
    quota_first = quota_left_bytes is not None and quota_left_bytes < max_bytes
    limit = min(max_bytes, quota_left_bytes) if quota_left_bytes is not None else max_bytes
    try:
        with target.open("xb") as handle:
            for chunk in _iter_chunks(uploaded_file):
                size += len(chunk)
                if size > limit:
                    raise UploadRefused(
                        f"The {kind} file does not fit in what is left of your storage quota "
                        f"({filesizeformat(limit)}): delete something you no longer need, or ask an "
                        "administrator for more room."
                        if quota_first
                        else f"The {kind} file is larger than the limit of {filesizeformat(max_bytes)}."
                    )
                digest.update(chunk)
                handle.write(chunk)
        if size == 0:
            raise UploadRefused(f"The {kind} file is empty (0 bytes).")
    except BaseException:
        _remove_quietly(target)
        raise
    return StagedUpload(
        path=target,
        sha256=digest.hexdigest(),
        size_bytes=size,
        original_filename=_clean_original_filename(uploaded_file),
    )


def _quota_left_or_refuse(*, owner: Any, kind: str) -> int:
    """Bytes the owner may still store; refuses at once (before reading the upload) when none."""
    use = storage_use(user=owner)
    if use.left_bytes <= 0:
        raise UploadRefused(
            f"Your storage quota is full ({use.describe()} used): delete models, videos or analyses "
            f"you no longer need before uploading this {kind}, or ask an administrator for more room."
        )
    return use.left_bytes


def _move_into_media(*, source: Path, relative_name: str) -> Path:
    destination = media_root() / relative_name
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)
    return destination


def _delete_stored(*names: str) -> None:
    """Remove stored files (their local copies and, with an object store, their objects).

    Called from cleanup paths and on-commit hooks: a failure (an unreachable bucket, a name
    that is not a storage name) is logged and never masks the original error or turns a
    committed delete into an error page; the orphan costs space, not correctness."""
    for name in names:
        if not name:
            continue
        try:
            storage.media_delete(names=[name])
        except Exception as exc:
            logger.warning("could not remove the stored file %s: %s", name, exc)


def _publish_moved(*, source: Path, relative_name: str) -> Path:
    """Move a complete local file to `relative_name` and make it the stored one (uploaded to the
    bucket, when there is one) before any row names it: a worker on another machine, or a web
    server, must find it there. On failure neither the local file nor the object remains."""
    stored = _move_into_media(source=source, relative_name=relative_name)
    try:
        storage.media_publish_file(name=relative_name)
    except BaseException:
        _remove_quietly(stored)
        _delete_stored(relative_name)  # a put may have landed before the error was seen
        raise
    return stored


# --------------------------------------------------------------------------- teams
def _check_team(*, team: Team | None, user: Any) -> Team | None:
    if team is None:
        return None
    if not user_is_team_member(user=user, team=team):
        raise InvalidTeam(f"You are not a member of the team “{team.name}”.")
    return team


# --------------------------------------------------------------------------- class maps
# One class-map grammar for the page and the engine's `--labels`: gradcam3d.classmap, a
# standard-library-only module (tests/test_architecture.py pins that importing it loads no
# NumPy, OpenCV or TensorFlow). Its refusals become this app's InvalidClassMap.
MAX_CLASS_INDEX = class_map_grammar.MAX_CLASS_INDEX


def class_map_entries(*, text: str) -> dict[int, str]:
    """Labels by class index; syntax, duplicates, label lengths and index sizes only (the
    model's class count is checked by `parse_class_map`, once the model is inspected)."""
    try:
        return class_map_grammar.class_map_entries(text)
    except class_map_grammar.ClassMapRefused as refused:
        raise InvalidClassMap(str(refused)) from None


def parse_class_map(*, text: str, num_classes: int) -> list[str]:
    """The labels of a model with `num_classes` classes, "" where a class has none."""
    try:
        return class_map_grammar.parse_class_map(text, num_classes=num_classes)
    except class_map_grammar.ClassMapRefused as refused:
        raise InvalidClassMap(str(refused)) from None


def class_map_text(*, labels: list[str]) -> str:
    """The editable `index: label` form of stored labels."""
    return "\n".join(f"{index}: {label}" for index, label in enumerate(labels) if label)


# --------------------------------------------------------------------------- shared by both libraries
def _restore_if_archived(obj: Classifier | Video, *, actor: Any) -> None:
    # Re-uploading an archived file brings it back instead of failing on the unique constraint.
    if obj.archived_at is None:
        return
    obj.archived_at = None
    obj.save(update_fields=["archived_at"])
    audit_log(actor=actor, action=f"{obj._meta.model_name}.restored", target=obj, data={})


def _live_copies(model: type[Classifier] | type[Video], *, owner: Any, sha256: str) -> Any:
    # A refused upload does not count: the same file may be uploaded again (to retry).
    return model.objects.filter(owner=owner, sha256=sha256).exclude(status=ProcessingStatus.FAILED)


def _stage_unless_duplicate(
    *, model: type[Classifier] | type[Video], owner: Any, uploaded_file: Any, max_bytes: int, kind: str
) -> StagedUpload:
    """Stage and hash the upload within the upload limit and the owner's storage quota, refusing
    it when the owner already has a file with that sha256.

    An archived copy is restored first, so the refusal leads the user to a live object.
    """
    quota_left = _quota_left_or_refuse(owner=owner, kind=kind)
    staged = stage_upload(
        uploaded_file=uploaded_file, max_bytes=max_bytes, kind=kind, quota_left_bytes=quota_left
    )
    try:
        existing = _live_copies(model, owner=owner, sha256=staged.sha256).first()
        if existing is not None:
            _restore_if_archived(existing, actor=owner)
            raise DuplicateUpload(existing)
    except BaseException:
        _remove_quietly(staged.path)
        raise
    return staged


def _refuse_raced_duplicate(*, model: type[Classifier] | type[Video], owner: Any, sha256: str) -> None:
    """Called on an IntegrityError from create: two identical uploads raced and the other won.

    Raises DuplicateUpload for that copy; returns when there is none, so the caller re-raises.
    """
    existing = _live_copies(model, owner=owner, sha256=sha256).first()
    if existing is not None:
        raise DuplicateUpload(existing) from None


def _record_upload(
    *, model: type[Classifier] | type[Video], staged: StagedUpload, relative_name: str, fields: dict[str, Any]
) -> Any:
    """Move the staged file to `relative_name`, create the `processing` row, audit the upload
    and queue its worker job (on commit); nothing is left behind when any step fails."""
    stored: Path | None = None
    try:
        stored = _publish_moved(source=staged.path, relative_name=relative_name)
        with transaction.atomic():
            obj = model.objects.create(**fields, status=ProcessingStatus.PROCESSING)
            audit_log(
                actor=obj.owner,
                action=f"{obj._meta.model_name}.uploaded",
                target=obj,
                data={
                    "name": obj.name,
                    "sha256": obj.sha256,
                    "size_bytes": obj.size_bytes,
                    "original_filename": obj.original_filename,
                },
            )
            processing_enqueue(obj)
    except IntegrityError:
        if stored is not None:
            _delete_stored(relative_name)
        _refuse_raced_duplicate(model=model, owner=fields["owner"], sha256=staged.sha256)
        raise
    except BaseException:
        if stored is not None:
            _delete_stored(relative_name)  # the object too: no row will ever name it
        raise
    finally:
        _remove_quietly(staged.path)
    # The worker reads the upload from the store (the bucket), not from this web server.
    storage.media_drop_local_copy(names=[relative_name])
    return obj


def _uploaded_file_fields(
    *,
    owner: Any,
    team: Team | None,
    name: str,
    description: str,
    staged: StagedUpload,
    file: str,
    fallback_name: str,
) -> dict[str, Any]:
    """The model fields every library object takes from its upload form and its staged file."""
    return {
        "owner": owner,
        "team": team,
        "name": (name or "").strip()[:200] or Path(staged.original_filename).stem[:200] or fallback_name,
        "description": (description or "").strip(),
        "file": file,
        "original_filename": staged.original_filename,
        "sha256": staged.sha256,
        "size_bytes": staged.size_bytes,
    }


def _audit_created(obj: Classifier | Video, *, actor: Any) -> None:
    audit_log(
        actor=actor,
        action=f"{obj._meta.model_name}.created",
        target=obj,
        data={
            "name": obj.name,
            "sha256": obj.sha256,
            "size_bytes": obj.size_bytes,
            "original_filename": obj.original_filename,
        },
    )


def _save_edits(
    obj: Classifier | Video,
    *,
    actor: Any,
    name: str,
    description: str,
    team: Team | None,
    own_fields: dict[str, Any],
) -> None:
    """Apply an edit (the common fields plus the library's `own_fields`), save it, audit what changed.

    The audit data has one `{"from", "to"}` entry per changed field (the team by its id); an
    edit that changes nothing is saved but not audited.
    """
    fields = ["name", "description", *own_fields, "team"]

    def audited_values() -> dict[str, Any]:
        return {field: obj.team_id if field == "team" else getattr(obj, field) for field in fields}

    before = audited_values()
    obj.name = (name or "").strip()[:200] or obj.name
    obj.description = (description or "").strip()
    for field, value in own_fields.items():
        setattr(obj, field, value)
    obj.team = team
    after = audited_values()
    changed = {key: {"from": before[key], "to": after[key]} for key in after if before[key] != after[key]}
    with transaction.atomic():
        obj.save(update_fields=fields)
        if changed:
            audit_log(actor=actor, action=f"{obj._meta.model_name}.updated", target=obj, data=changed)


# --------------------------------------------------------------------------- classifiers
_MODEL_EXTENSIONS = {"h5": ".h5", "keras": ".keras"}
PENDING_SUFFIX = ".pending"


def classifier_create(
    *,
    owner: Any,
    team: Team | None,
    uploaded_file: Any,
    name: str,
    description: str = "",
    class_map_text: str = "",
) -> Classifier:
    """Store an uploaded model for inspection by a worker; the row is `processing` until then."""
    team = _check_team(team=team, user=owner)
    # Syntax errors in the class map are cheap to find: before the upload is even copied. Its
    # indices are checked against the model's class count once the model is inspected.
    class_map_entries(text=class_map_text)
    staged = _stage_unless_duplicate(
        model=Classifier,
        owner=owner,
        uploaded_file=uploaded_file,
        max_bytes=settings.GRADCAM_MAX_MODEL_BYTES,
        kind="model",
    )
    fields = _uploaded_file_fields(
        owner=owner,
        team=team,
        name=name,
        description=description,
        staged=staged,
        file=f"classifiers/{uuid.uuid4().hex}{PENDING_SUFFIX}",
        fallback_name="Model",
    )
    return _record_upload(
        model=Classifier,
        staged=staged,
        relative_name=fields["file"],
        fields={
            **fields,
            "pending_class_map": class_map_text or "",
            "status_message": "Waiting for a worker to inspect the model.",
        },
    )


def _refuse_processing(obj: Classifier | Video, *, lease: str, message: str) -> str:
    """processing -> refused: the uploaded file (and anything made from it) is removed."""
    if processing_fail(obj=obj, lease=lease, message=message, fields={"file": ""}):
        audit_log(
            actor=obj.owner, action=f"{obj._meta.model_name}.refused", target=obj, data={"reason": message}
        )
        _delete_stored(obj.file.name)
        return ProcessingStatus.FAILED
    return "gone"  # deleted (or taken over) while it was being processed


def _fetch_upload_or_refuse(obj: Classifier | Video, *, what: str) -> Path:
    """A complete local copy of the uploaded file, from the store (this worker may share no disk
    with the web server that took the upload); refused when it is not stored."""
    try:
        return storage.media_fetch(name=obj.file.name, size=obj.size_bytes)
    except storage.MediaMissing:
        raise UploadRefused(
            f"The uploaded {what} file is missing from the server; upload it again."
        ) from None


def _publish_processed(renames: list[tuple[Path, str]]) -> list[str]:
    """Move each processed file to its final name and publish it; the names published. On
    failure, what was already published is removed again and the error raised."""
    published: list[str] = []
    try:
        for source, relative_name in renames:
            _publish_moved(source=source, relative_name=relative_name)
            published.append(relative_name)
    except BaseException:
        _delete_stored(*published)
        raise
    return published


def _finish_processing(
    obj: Classifier | Video, *, lease: str, renames: list[tuple[Path, str]], fields: dict[str, Any]
) -> str:
    """Store the processed files under their final names (published before the row names them)
    and mark the row ready, or remove them again when the row is no longer this job's."""
    uploaded_name = obj.file.name
    try:
        published = _publish_processed(renames)
    except Exception as exc:  # a full disk (OSError) or an unreachable bucket (boto's errors)
        if not type(obj).objects.filter(pk=obj.pk, processing_lease=lease).exists():
            return "gone"  # deleted while it was processed: the delete removed the upload
        logger.error("%s %s: the processed files could not be stored: %s", obj._meta.model_name, obj.pk, exc)
        return _refuse_processing(
            obj, lease=lease, message="The upload could not be stored on the server; upload it again."
        )
    try:
        with transaction.atomic():
            won = processing_finish(obj=obj, lease=lease, fields=fields)
            if won:
                obj.refresh_from_db()
                _audit_created(obj, actor=obj.owner)
    except BaseException:
        _delete_stored(*published)
        raise
    if not won:
        _delete_stored(*published)
        return "gone"
    if uploaded_name not in published:
        # The row now names the final copy: the upload's pending name goes (in the bucket; on
        # the local disk it was renamed away already).
        _delete_stored(uploaded_name)
    return ProcessingStatus.READY


def classifier_process(*, classifier_id: int) -> str:
    """The worker's job for an uploaded model: inspect it in a sandboxed child (no model code
    runs), fit the class map to its classes, and mark it ready, or refused with the reason.

    Returns "ready", "failed", or "skipped" / "gone" when the job is not (or no longer) ours.
    """
    lease = processing_claim(model=Classifier, pk=classifier_id)
    if lease is None:
        return "skipped"
    classifier = Classifier.objects.get(pk=classifier_id)
    try:
        pending = _fetch_upload_or_refuse(classifier, what="model")
        try:
            inspection = engine_client.inspect_model_file(pending)
        except engine_client.EngineError as exc:
            raise UploadRefused(exc.message) from None
        extension = _MODEL_EXTENSIONS.get(str(inspection.get("format")))
        if extension is None:
            raise UploadRefused("The file is not a Keras model in .h5 or .keras format.")
        num_classes = int(inspection["num_classes"])
        labels = parse_class_map(text=classifier.pending_class_map, num_classes=num_classes)
    except LibraryError as exc:
        return _refuse_processing(classifier, lease=lease, message=exc.message)
    final_name = classifier.file.name.removesuffix(PENDING_SUFFIX) + extension
    return _finish_processing(
        classifier,
        lease=lease,
        renames=[(pending, final_name)],
        fields={
            "file": final_name,
            "file_format": str(inspection["format"]),
            "input_shape": [int(size) for size in inspection["input_shape"]],
            "num_classes": num_classes,
            "conv3d_layers": list(inspection.get("conv3d_layers") or []),
            "class_labels": labels,
            "inspection": inspection,
            "pending_class_map": "",
        },
    )


def _check_team_change(*, obj: Classifier | Video, actor: Any, team: Team | None) -> Team | None:
    if (team.pk if team else None) == obj.team_id:
        return team
    if obj.owner_id != actor.pk:
        raise InvalidTeam("Only the owner can move this to another team.")
    return _check_team(team=team, user=actor)


def classifier_update(
    *,
    classifier: Classifier,
    actor: Any,
    name: str,
    description: str,
    class_map_text: str,
    team: Team | None,
) -> Classifier:
    team = _check_team_change(obj=classifier, actor=actor, team=team)
    own_fields: dict[str, Any] = {}
    if classifier.is_ready:
        own_fields["class_labels"] = parse_class_map(text=class_map_text, num_classes=classifier.num_classes)
    _save_edits(classifier, actor=actor, name=name, description=description, team=team, own_fields=own_fields)
    return classifier


def _delete_or_archive(obj: _LibraryT, *, actor: Any, media_names: Callable[[_LibraryT], list[str]]) -> str:
    """Delete `obj` and (after commit) its files, or archive it when analyses use it.

    The row is locked first, so an analysis created concurrently either committed before
    (and is seen by the check) or waits for this transaction (PostgreSQL). Should one still
    slip in between the check and the delete, the PROTECT foreign key raises ProtectedError
    and the object is archived instead of the request failing.
    """
    kind = obj._meta.model_name
    with transaction.atomic():
        locked = type(obj).objects.select_for_update().filter(pk=obj.pk).first()
        if locked is None:  # deleted meanwhile by someone else (who audited it)
            return "deleted"
        if not locked.analyses.exists():
            names = media_names(locked)

            def delete_media_files() -> None:
                _delete_stored(*names)

            try:
                with transaction.atomic():  # a savepoint: the audit event goes with the delete
                    audit_log(
                        actor=actor,
                        action=f"{kind}.deleted",
                        target=locked,
                        data={  # the tombstone: what was deleted, with the file's hash
                            "name": locked.name,
                            "sha256": locked.sha256,
                            "original_filename": locked.original_filename,
                            "size_bytes": locked.size_bytes,
                            "created_at": locked.created_at.isoformat(),
                        },
                    )
                    locked.delete()
            except ProtectedError:
                logger.info("%s %s gained an analysis while being deleted; archiving it", kind, obj.pk)
            else:
                # The files go only once the row is gone for good.
                transaction.on_commit(delete_media_files)
                return "deleted"
        if locked.archived_at is None:
            locked.archived_at = timezone.now()
            locked.save(update_fields=["archived_at"])
        obj.archived_at = locked.archived_at
        audit_log(
            actor=actor,
            action=f"{kind}.archived",
            target=locked,
            data={"name": locked.name, "analyses": locked.analyses.count()},
        )
    return "archived"


def classifier_delete(*, classifier: Classifier, actor: Any) -> str:
    """Delete the classifier, or archive it when analyses use it (their results stay valid).

    Returns "deleted" or "archived".
    """
    return _delete_or_archive(classifier, actor=actor, media_names=lambda obj: [obj.file.name])


# --------------------------------------------------------------------------- videos
# FFmpeg demuxer names -> the extension we store the original under.
_CONTAINER_EXTENSIONS = {
    "mp4": ".mp4",
    "mov": ".mov",
    "m4a": ".mp4",
    "3gp": ".3gp",
    "matroska": ".mkv",
    "webm": ".webm",
    "avi": ".avi",
    "flv": ".flv",
    "mpegts": ".ts",
    "mpeg": ".mpg",
    "ogg": ".ogv",
    "asf": ".wmv",
    "gif": ".gif",
    "mjpeg": ".mjpeg",
    "h264": ".h264",
    "hevc": ".hevc",
    "rawvideo": ".raw",
    "image2": ".img",
    "y4m": ".y4m",
    "yuv4mpegpipe": ".y4m",
}


def video_extension_for(*, container: str) -> str:
    """`"mov,mp4,m4a,3gp,3g2,mj2"` -> `.mp4`; an unknown demuxer -> `.video`."""
    names = [name.strip().lower() for name in (container or "").split(",") if name.strip()]
    # FFmpeg's MP4 demuxer is called "mov,mp4,...": prefer mp4, the far more common case.
    if "mp4" in names:
        return ".mp4"
    for name in names:
        if name in _CONTAINER_EXTENSIONS:
            return _CONTAINER_EXTENSIONS[name]
    return ".video"


def _check_expected_class(expected_class: Any) -> int | None:
    if expected_class in (None, ""):
        return None
    text = str(expected_class).strip()
    if len(text) > len(str(MAX_CLASS_INDEX)) + 1:  # never int() a huge string
        raise LibraryError(f"The expected class must be a class index from 0 to {MAX_CLASS_INDEX:,}.")
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise LibraryError("The expected class must be a whole number (a class index).") from None
    if not 0 <= value <= MAX_CLASS_INDEX:
        raise LibraryError(f"The expected class must be a class index from 0 to {MAX_CLASS_INDEX:,}.")
    return value


def video_create(
    *,
    owner: Any,
    team: Team | None,
    uploaded_file: Any,
    name: str,
    description: str = "",
    expected_class: int | None = None,
) -> Video:
    """Store an uploaded video for probing and transcoding by a worker (`processing` until then)."""
    team = _check_team(team=team, user=owner)
    expected_class = _check_expected_class(expected_class)
    staged = _stage_unless_duplicate(
        model=Video,
        owner=owner,
        uploaded_file=uploaded_file,
        max_bytes=settings.GRADCAM_MAX_VIDEO_BYTES,
        kind="video",
    )
    fields = _uploaded_file_fields(
        owner=owner,
        team=team,
        name=name,
        description=description,
        staged=staged,
        file=f"videos/{uuid.uuid4().hex}{PENDING_SUFFIX}",
        fallback_name="Video",
    )
    return _record_upload(
        model=Video,
        staged=staged,
        relative_name=fields["file"],
        fields={
            **fields,
            "expected_class": expected_class,
            "status_message": "Waiting for a worker to read the video and make a browser copy.",
        },
    )


def _transcode_or_refuse(*, source: Path, rendition: Path, poster: Path) -> dict[str, Any]:
    try:
        # `transcode` probes first (same limits and refusals as `probe`) and returns the probe
        # fields, so one child process does both.
        probe = engine_client.transcode_video_file(source, rendition, poster)
    except engine_client.EngineError as exc:
        raise UploadRefused(exc.message) from None
    if not rendition.is_file() or not poster.is_file():
        raise UploadRefused("The video could not be converted for playback in the browser.")
    return probe


def _probe_fields(probe: dict[str, Any]) -> dict[str, Any]:
    return {
        "container": str(probe.get("container") or "")[:100],
        "codec": str(probe.get("codec") or "")[:100],
        "width": int(probe.get("width") or 0),
        "height": int(probe.get("height") or 0),
        "fps": float(probe.get("fps") or 0.0),
        "duration_seconds": float(probe.get("duration_seconds") or 0.0),
        "frame_count": int(probe.get("frame_count") or 0),
        "probe": {key: value for key, value in probe.items() if key not in ("rendition", "poster")},
    }


def video_process(*, video_id: int) -> str:
    """The worker's job for an uploaded video: probe it within the limits and make its browser
    copy and poster in a sandboxed child, then mark it ready, or refused with the reason.

    Returns "ready", "failed", or "skipped" / "gone" when the job is not (or no longer) ours.
    """
    lease = processing_claim(model=Video, pk=video_id)
    if lease is None:
        return "skipped"
    video = Video.objects.get(pk=video_id)
    stem = Path(video.file.name).name.removesuffix(PENDING_SUFFIX)
    # The child writes (and, if killed, leaves) partial files next to its outputs: give it a
    # folder of its own under MEDIA_ROOT/tmp (same file system: the final renames stay atomic).
    work_dir = Path(tempfile.mkdtemp(prefix=f"transcode-{stem}-", dir=_tmp_dir()))
    try:
        rendition, poster = work_dir / f"{stem}.web.mp4", work_dir / f"{stem}.poster.jpg"
        try:
            pending = _fetch_upload_or_refuse(video, what="video")
            probe = _transcode_or_refuse(source=pending, rendition=rendition, poster=poster)
        except LibraryError as exc:
            return _refuse_processing(video, lease=lease, message=exc.message)
        names = {
            "file": f"videos/{stem}{video_extension_for(container=str(probe.get('container', '')))}",
            "rendition": f"videos/{stem}.web.mp4",
            "poster": f"videos/{stem}.poster.jpg",
        }
        outcome = _finish_processing(
            video,
            lease=lease,
            renames=[(pending, names["file"]), (rendition, names["rendition"]), (poster, names["poster"])],
            fields={
                **names,
                **_probe_fields(probe),
                "derived_bytes": rendition.stat().st_size + poster.stat().st_size,
            },
        )
        if outcome == ProcessingStatus.READY:
            # Web servers deliver these from the store; no worker reads them again. (The original
            # stays cached here: analyses of the video read it.)
            storage.media_drop_local_copy(names=[names["rendition"], names["poster"]])
        return outcome
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def video_update(
    *,
    video: Video,
    actor: Any,
    name: str,
    description: str,
    expected_class: int | None,
    team: Team | None,
) -> Video:
    team = _check_team_change(obj=video, actor=actor, team=team)
    expected_class = _check_expected_class(expected_class)
    _save_edits(
        video,
        actor=actor,
        name=name,
        description=description,
        team=team,
        own_fields={"expected_class": expected_class},
    )
    return video


def video_delete(*, video: Video, actor: Any) -> str:
    """Delete the video and its rendition/poster, or archive it when analyses use it."""
    return _delete_or_archive(
        video, actor=actor, media_names=lambda obj: [obj.file.name, obj.rendition.name, obj.poster.name]
    )


def library_file_downloaded(*, user: Any, obj: Classifier | Video) -> None:
    """Record a download of an uploaded model or original video (classifier.downloaded,
    video.downloaded), with the file's name and hash."""
    audit_log(
        actor=user,
        action=f"{obj._meta.model_name}.downloaded",
        target=obj,
        data={"file": obj.original_filename, "sha256": obj.sha256},
    )
