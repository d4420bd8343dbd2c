"""The media store: where uploaded models, videos and results live.

Two set-ups, chosen by settings:

- **Local disk** (default, MEDIA_BUCKET unset): MEDIA_ROOT *is* the store. Every function here
  is a no-op or a plain file operation, so a single machine works exactly as before.
- **Object store** (MEDIA_BUCKET set): an S3-compatible bucket, through django-storages, is the
  store, and MEDIA_ROOT is only this machine's cache and scratch space. Web servers and worker
  machines share nothing but the database, the broker and the bucket:
  - a file is written locally first, complete, then `media_publish_file`/`media_publish_tree`
    uploads it; the database row that names it is written only after that, so nobody is ever
    shown a half-uploaded file or result;
  - a worker that needs an input calls `media_fetch`, which downloads it into the local cache
    (to a temporary name, renamed when complete) unless a complete copy is already there;
  - a web server never downloads a file to serve it: `media_delivery_response` answers with a
    redirect to a short-lived presigned URL, or with `X-Accel-Redirect` so nginx streams it.

Names are always relative storage names ("classifiers/3/ab12....h5",
"analyses/<code hex>/attempt-1/layers/00/heatmap.mp4"): the same string is the path under
MEDIA_ROOT and the key in the bucket (after MEDIA_S3_PREFIX). Names are made by the platform,
never from a user's file name.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import shutil
import stat as stat_module
import uuid
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.files.storage import storages
from django.http import HttpResponse, HttpResponseRedirect
from django.utils.http import content_disposition_header

logger = logging.getLogger(__name__)

BUCKET_STORAGE_ALIAS = "media_bucket"
DELIVERY_DJANGO = "django"
DELIVERY_ACCEL = "accel"
DELIVERY_PRESIGNED = "presigned"
_DOWNLOAD_SUFFIX = ".part"


class MediaMissing(FileNotFoundError):
    """A stored file is not there (deleted meanwhile, or never completely uploaded)."""


def store_is_remote() -> bool:
    return bool(getattr(settings, "MEDIA_BUCKET", ""))


def _check_name(name: str | os.PathLike[str]) -> str:
    """A clean relative storage name, or MediaMissing: no absolute path, no '..', no backslash."""
    text = os.fspath(name)
    parts = text.split("/")
    if not text or text.startswith("/") or "\\" in text or any(part in ("", ".", "..") for part in parts):
        raise MediaMissing(f"not a storage name: {text!r}")
    return text


def media_local_path(name: str | os.PathLike[str]) -> Path:
    """Where `name` is (local store) or is cached (object store) on this machine."""
    return Path(settings.MEDIA_ROOT) / _check_name(name)


@cache
def _bucket() -> Any:
    """The django-storages S3Storage configured by settings.STORAGES[BUCKET_STORAGE_ALIAS]."""
    return storages[BUCKET_STORAGE_ALIAS]


def _bucket_key(name: str) -> str:
    """The object's key in the bucket (django-storages adds its `location`, MEDIA_S3_PREFIX)."""
    return _bucket()._normalize_name(_check_name(name))


# --------------------------------------------------------------------------- writes
def media_publish_file(*, name: str) -> None:
    """The local file `name` is complete: make it the stored one (upload it to the bucket).

    Object puts are atomic: readers see the old object, none, or the whole new one."""
    if not store_is_remote():
        return
    path = media_local_path(name)
    _bucket().bucket.upload_file(str(path), _bucket_key(name), ExtraArgs=_upload_args(name))


def media_publish_tree(*, prefix: str) -> list[str]:
    """Upload every regular file under the local folder `prefix` (symlinks and other oddities
    written by an engine child are skipped, never followed); the names uploaded, sorted.

    The caller writes the row that names `prefix` only after this returns: a folder whose upload
    was interrupted is never served, and is removed with its analysis."""
    root = media_local_path(prefix)
    names = sorted(f"{prefix}/{relative}" for relative in _regular_files(root))
    if store_is_remote():
        for name in names:
            media_publish_file(name=name)
    return names


def _regular_files(root: Path) -> Iterator[str]:
    for folder, subfolders, files in os.walk(root, followlinks=False):
        subfolders[:] = [d for d in subfolders if not (Path(folder) / d).is_symlink()]
        for file_name in files:
            path = Path(folder) / file_name
            if stat_module.S_ISREG(path.lstat().st_mode):
                yield path.relative_to(root).as_posix()


def _upload_args(name: str) -> dict[str, str]:
    # The object's own type matters only to someone reading the bucket directly: every delivery
    # sets the response's type explicitly (presigned ResponseContentType, or Django's header).
    return {"ContentType": mimetypes.guess_type(name)[0] or "application/octet-stream"}


def media_delete(*, names: Iterable[str]) -> None:
    """Remove stored files (and their local copies); missing ones are not an error."""
    clean = [_check_name(name) for name in names if name]
    for name in clean:
        try:
            media_local_path(name).unlink()
        except FileNotFoundError:
            pass
        except OSError as problem:
            logger.warning("could not remove the local copy of %s: %s", name, problem)
    if store_is_remote() and clean:
        _delete_keys([_bucket_key(name) for name in clean])


def media_delete_prefix(*, prefix: str) -> None:
    """Remove a whole stored folder (every object under `prefix/`) and its local copy."""
    shutil.rmtree(media_local_path(prefix), ignore_errors=True)
    if not store_is_remote():
        return
    bucket = _bucket().bucket
    keys = [summary.key for summary in bucket.objects.filter(Prefix=_bucket_key(prefix) + "/")]
    _delete_keys(keys)


def _delete_keys(keys: list[str]) -> None:
    bucket = _bucket().bucket
    for start in range(0, len(keys), 1000):  # S3's limit per DeleteObjects call
        batch = keys[start : start + 1000]
        bucket.delete_objects(Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})


# --------------------------------------------------------------------------- reads (workers)
def media_fetch(*, name: str, size: int | None = None) -> Path:
    """A complete local copy of the stored file `name`; MediaMissing when it is not stored.

    Local store: the file itself. Object store: the cached copy when it is there and (when
    `size` is given) has that size, else a fresh download, renamed into place when complete,
    so two processes fetching at once each see a whole file."""
    path = media_local_path(name)
    if not store_is_remote():
        if not path.is_file():
            raise MediaMissing(name)
        return path
    if path.is_file() and (size is None or path.stat().st_size == size):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}{_DOWNLOAD_SUFFIX}")
    try:
        _bucket().bucket.download_file(_bucket_key(name), str(partial))
        os.replace(partial, path)
    except Exception as problem:
        partial.unlink(missing_ok=True)
        if _is_not_found(problem):
            raise MediaMissing(name) from None
        raise
    return path


def media_drop_local_copy(*, names: Iterable[str]) -> None:
    """Object store only: forget this machine's copies of stored files (the bucket keeps them).
    A web server calls it after publishing an upload, a worker after publishing results."""
    if not store_is_remote():
        return
    for name in names:
        try:
            local = media_local_path(name)
            if local.is_dir():
                shutil.rmtree(local, ignore_errors=True)
            else:
                local.unlink(missing_ok=True)
        except (OSError, MediaMissing) as problem:
            logger.warning("could not drop the local copy of %s: %s", name, problem)


def media_cache_trim(*, max_bytes: int, skip: Iterable[str] = ()) -> int:
    """Object store only: remove the least recently used cached copies until this machine's
    cache holds at most `max_bytes`; folders named in `skip` (relative to MEDIA_ROOT: work and
    staging folders) are left alone. The number of files removed.

    A copy an engine child still reads stays readable to it (an unlinked file lives on while
    open), and the next job that needs it downloads it again."""
    if not store_is_remote():
        return 0
    root = Path(settings.MEDIA_ROOT)
    skipped = {root / name for name in skip}
    entries: list[tuple[float, int, Path]] = []
    for folder, subfolders, files in os.walk(root, followlinks=False):
        subfolders[:] = [d for d in subfolders if Path(folder) / d not in skipped and not d.startswith(".")]
        for file_name in files:
            path = Path(folder) / file_name
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat_module.S_ISREG(info.st_mode) and not file_name.endswith(_DOWNLOAD_SUFFIX):
                entries.append((max(info.st_atime, info.st_mtime), info.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed


def media_stored_folders(*, prefix: str) -> list[str]:
    """Object store only: the names of the "folders" (key prefixes) directly under `prefix`."""
    if not store_is_remote():
        return []
    return list(_bucket().listdir(_check_name(prefix))[0])


def media_newest_modified(*, prefix: str) -> float | None:
    """Object store only: the newest upload time (epoch seconds) of the files directly under
    `prefix`, or None when it holds none."""
    if not store_is_remote():
        return None
    bucket = _bucket()
    names = bucket.listdir(_check_name(prefix))[1]
    return max((bucket.get_modified_time(f"{prefix}/{name}").timestamp() for name in names), default=None)


def _is_not_found(problem: Exception) -> bool:
    if isinstance(problem, FileNotFoundError):  # django-storages' own translation
        return True
    response = getattr(problem, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return code in ("404", "NoSuchKey", "NotFound")


def media_exists(*, name: str) -> bool:
    if not store_is_remote():
        return media_local_path(name).is_file()
    return bool(_bucket().exists(_check_name(name)))


def media_size(*, name: str) -> int:
    """The stored size in bytes; MediaMissing when not stored."""
    if not store_is_remote():
        try:
            return media_local_path(name).stat().st_size
        except OSError:
            raise MediaMissing(name) from None
    try:
        return int(_bucket().size(_check_name(name)))
    except Exception as problem:
        if _is_not_found(problem):
            raise MediaMissing(name) from None
        raise


def media_open(*, name: str) -> IO[bytes]:
    """A binary reader of the stored file (the bucket's object is streamed, not downloaded)."""
    if not store_is_remote():
        try:
            return media_local_path(name).open("rb")
        except OSError:
            raise MediaMissing(name) from None
    try:
        return _bucket().open(_check_name(name), "rb")
    except Exception as problem:
        if _is_not_found(problem):
            raise MediaMissing(name) from None
        raise


# --------------------------------------------------------------------------- delivery (web)
def media_delivery_mode() -> str:
    return str(settings.MEDIA_DELIVERY)


def media_delivery_response(
    *, name: str, content_type: str, download_name: str | None = None
) -> HttpResponse | None:
    """The response that hands the file to nginx or to the object store, after the caller's
    permission check; None when Django must stream it itself (DELIVERY_DJANGO).

    - accel, local store: `X-Accel-Redirect: <MEDIA_ACCEL_PREFIX>media/<name>`; nginx serves the
      file from its `internal` location (Range, If-Range and conditional requests included).
    - accel, object store: `X-Accel-Redirect: <MEDIA_ACCEL_PREFIX>s3/<presigned path>?<query>`;
      nginx's internal location proxies it to the object store, passing the client's Range.
    - presigned: a redirect to a presigned URL valid for MEDIA_PRESIGN_SECONDS.
    """
    mode = media_delivery_mode()
    if mode == DELIVERY_DJANGO:
        return None
    disposition = (
        content_disposition_header(as_attachment=True, filename=os.path.basename(download_name) or "download")
        if download_name
        else "inline"
    )
    if mode == DELIVERY_PRESIGNED:
        response: HttpResponse = HttpResponseRedirect(
            _presigned_url(name=name, content_type=content_type, disposition=disposition or "attachment")
        )
    else:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = _accel_target(
            name=name, content_type=content_type, disposition=disposition or "attachment"
        )
        response["Content-Disposition"] = disposition or "attachment"
        response["X-Accel-Buffering"] = "no"
    # Private data, and a presigned address that expires: never cached by a shared cache.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _presigned_url(*, name: str, content_type: str, disposition: str) -> str:
    return str(
        _bucket().url(
            _check_name(name),
            parameters={"ResponseContentType": content_type, "ResponseContentDisposition": disposition},
            expire=settings.MEDIA_PRESIGN_SECONDS,
        )
    )


def _accel_target(*, name: str, content_type: str, disposition: str) -> str:
    prefix = settings.MEDIA_ACCEL_PREFIX
    if not store_is_remote():
        return f"{prefix}media/{quote(_check_name(name))}"
    address = urlsplit(_presigned_url(name=name, content_type=content_type, disposition=disposition))
    # nginx proxies `<prefix>s3/<rest>` to MEDIA_S3_ENDPOINT_URL + "/<rest>"; the signature
    # covers the path, the query and the endpoint's host, which nginx sends as Host.
    return f"{prefix}s3{address.path}?{address.query}"
