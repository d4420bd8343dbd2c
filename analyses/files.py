"""Serving private files (uploads and results) with HTTP Range support.

MEDIA_ROOT has no public URL: every file goes through a view that first checks the same
permission as the page it belongs to, then calls `private_file_response`. Browsers seek in a
<video> with Range requests, so single byte ranges are answered with 206 Partial Content (416
for a range outside the file); multi-range requests get the whole file (allowed by RFC 9110).
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat as stat_module
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import http_date, parse_http_date_safe, quote_etag

from analyses import storage

# At most 18 digits a side (< 10**18 bytes, far above any stored file): a longer number is
# treated as a malformed header (the whole file is sent) instead of being parsed; int() of a
# few thousand digits is slow and past 4300 digits it raises.
_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
_MAX_RANGE_HEADER_CHARS = 200
_CHUNK_BYTES = 64 * 1024


# Result files are written by the engine, which parsed untrusted files: nothing it wrote is
# trusted. A name is served only when it is a clean relative path of these characters, its
# media type comes from this table (never from the manifest), and no component is a symlink.
RESULT_MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".npz": "application/octet-stream",
}
_RESULT_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
_MAX_RESULT_DEPTH = 8


def clean_result_name(name: Any) -> str | None:
    """`name` if it is a safe relative result path ("layers/00/frames/0001.png"), else None."""
    if not isinstance(name, str) or not name or len(name) > 400 or "\\" in name:
        return None
    parts = name.split("/")
    if len(parts) > _MAX_RESULT_DEPTH or any(
        not _RESULT_COMPONENT.match(part) or part in (".", "..") for part in parts
    ):
        return None
    return name


def result_media_type(name: str) -> str:
    return RESULT_MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def resolve_result_path(*, results_dir: str, name: str) -> Path:
    """The file `name` inside an analysis's results folder; 404 unless every component is a real
    folder or (last) a regular file, never a symlink, and the result stays inside the folder."""
    clean = clean_result_name(name)
    if clean is None or not results_dir:
        raise Http404("No such result file")
    root = Path(settings.MEDIA_ROOT) / results_dir
    current = root
    try:
        for position, part in enumerate([*clean.split("/")]):
            current = current / part
            mode = current.lstat().st_mode
            last = position == len(clean.split("/")) - 1
            if (
                stat_module.S_ISLNK(mode)
                or (last and not stat_module.S_ISREG(mode))
                or (not last and not stat_module.S_ISDIR(mode))
            ):
                raise Http404("No such result file")
        if stat_module.S_ISLNK(root.lstat().st_mode):
            raise Http404("No such result file")
    except OSError:
        raise Http404("No such result file") from None
    resolved_root = root.resolve()
    if resolved_root not in current.resolve().parents:
        raise Http404("No such result file")
    return current


def resolve_media_path(storage_path: str | os.PathLike[str]) -> Path:
    """The absolute path of a MEDIA_ROOT-relative name; 404 if it escapes MEDIA_ROOT or is missing."""
    if not storage_path:
        raise Http404("No file")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / os.fspath(storage_path)).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("No file")
    return path


class _RangeFile:
    """A file object that yields only bytes [start, start + length)."""

    def __init__(self, path: Path, *, start: int, length: int) -> None:
        self._handle = path.open("rb")
        self._handle.seek(start)
        self._remaining = length

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        if size < 0 or size > self._remaining:
            size = self._remaining
        data = self._handle.read(size)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()


def _parse_range(header: str, *, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive), None to send everything, or "unsatisfiable"."""
    if len(header) > _MAX_RANGE_HEADER_CHARS:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # malformed or multiple ranges: ignore the header (RFC 9110 allows it)
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _not_modified(request: HttpRequest, *, etag: str, modified_seconds: float) -> HttpResponse | None:
    """304 when the client's copy (by ETag, else by date) is current; None otherwise."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match:
        current = etag in [tag.strip() for tag in if_none_match.split(",")]
    else:
        since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
        current = since is not None and int(modified_seconds) <= since
    if not current:
        return None
    not_modified = HttpResponse(status=304)
    not_modified["ETag"] = etag
    return not_modified


def _requested_range(
    request: HttpRequest, *, size: int, etag: str, last_modified: str
) -> tuple[int, int] | None | str:
    """(start, end) of a satisfiable Range, "unsatisfiable", or None for the whole file."""
    range_header = request.headers.get("Range")
    if not range_header:
        return None
    if_range = request.headers.get("If-Range")
    # A stale If-Range means "send the whole (new) file".
    if not if_range or if_range.strip() in (etag, last_modified):
        return _parse_range(range_header, size=size)
    return None


def _file_body(
    path: Path, *, byte_range: tuple[int, int] | None, size: int, content_type: str
) -> FileResponse:
    if byte_range is None:
        response = FileResponse(path.open("rb"), content_type=content_type)
        response["Content-Length"] = str(size)
        return response
    start, end = byte_range
    length = end - start + 1
    response = FileResponse(
        _RangeFile(path, start=start, length=length), status=206, content_type=content_type
    )
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(length)
    return response


def private_file_response(
    request: HttpRequest,
    *,
    storage_path: str | os.PathLike[str] = "",
    path: Path | None = None,
    content_type: str | None = None,
    download_name: str | None = None,
) -> HttpResponseBase:
    """Send a stored file after the caller has checked permissions: `storage_path`, a storage
    name (relative to MEDIA_ROOT, or the bucket's key), or an absolute local `path` the caller
    has already checked (a preview's scratch file).

    With MEDIA_DELIVERY accel or presigned, nginx or the object store sends the bytes (see
    analyses.storage); otherwise Django streams the local file (Range, ETag, 304).
    `download_name` makes it an attachment with that name; otherwise it is shown inline.
    """
    if path is None:
        name = os.fspath(storage_path)
        media_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            delivered = storage.media_delivery_response(
                name=name, content_type=media_type, download_name=download_name
            )
            if delivered is not None:
                return delivered
            # The local store: never outside MEDIA_ROOT. The object store (a development set-up,
            # MEDIA_DELIVERY=django): this machine's cached copy.
            path = storage.media_fetch(name=name) if storage.store_is_remote() else resolve_media_path(name)
        except storage.MediaMissing:
            raise Http404("No file") from None
        content_type = media_type
    return _local_file_response(request, path=path, content_type=content_type, download_name=download_name)


def stored_result_response(
    request: HttpRequest,
    *,
    results_dir: str,
    name: str,
    content_type: str | None = None,
    download_name: str | None = None,
) -> HttpResponseBase:
    """Send one file of a published results folder (an analysis's, a difference's) after the
    caller's permission check, and after checking `name` is a clean result name.

    On the local disk every component is checked (no symlink, stays inside the folder); in the
    object store only regular files were ever uploaded (storage.media_publish_tree)."""
    clean = clean_result_name(name)
    if clean is None or not results_dir:
        raise Http404("No such result file")
    media_type = content_type or result_media_type(clean)
    if not storage.store_is_remote():
        local = resolve_result_path(results_dir=results_dir, name=clean)
        if storage.media_delivery_mode() == storage.DELIVERY_DJANGO:
            return _local_file_response(
                request, path=local, content_type=media_type, download_name=download_name
            )
    return private_file_response(
        request, storage_path=f"{results_dir}/{clean}", content_type=media_type, download_name=download_name
    )


def _local_file_response(
    request: HttpRequest, *, path: Path, content_type: str | None, download_name: str | None
) -> HttpResponseBase:
    stat = path.stat()
    size = stat.st_size
    etag = quote_etag(f"{int(stat.st_mtime_ns):x}-{size:x}")
    last_modified = http_date(stat.st_mtime)
    not_modified = _not_modified(request, etag=etag, modified_seconds=stat.st_mtime)
    if not_modified is not None:
        return not_modified
    byte_range = _requested_range(request, size=size, etag=etag, last_modified=last_modified)
    if byte_range == "unsatisfiable":
        refused = HttpResponse(status=416)
        refused["Content-Range"] = f"bytes */{size}"
        refused["Accept-Ranges"] = "bytes"
        return refused
    response = _file_body(
        path,
        byte_range=byte_range if isinstance(byte_range, tuple) else None,
        size=size,
        content_type=content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream",
    )
    response.block_size = _CHUNK_BYTES
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["Last-Modified"] = last_modified
    # Private data: caches may keep it only for this user.
    response["Cache-Control"] = "private, max-age=0, must-revalidate"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = _attachment(download_name) if download_name else "inline"
    return response


def _attachment(name: str) -> str:
    from django.utils.http import content_disposition_header

    safe_name = os.path.basename(name).replace("\x00", "") or "download"
    return content_disposition_header(as_attachment=True, filename=safe_name) or "attachment"
