"""The ZIP of an analysis's results: which files go in, and writing it.

Two producers share this module, so both give byte-for-byte the same member names and
compression:

- the web's streamed ZIP (`zip_stream`), used on one machine (MEDIA_DELIVERY=django) and for
  analyses published before ZIPs were prebuilt;
- the worker (`zip_build_file`), which writes the ZIP into the attempt's folder before the
  folder is uploaded, when the web must never stream it (MEDIA_DELIVERY accel or presigned:
  nginx or the object store sends it).

The prebuilt ZIP is named ARCHIVE_NAME, a name `clean_result_name` refuses: the engine's
manifest can never list it (or make the file view serve it), and it is not one of its files.
"""

from __future__ import annotations

import os
import stat as stat_module
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.http import Http404

from analyses import storage
from analyses.files import clean_result_name, resolve_result_path, result_media_type

ARCHIVE_NAME = ".results.zip"
ZIP_CHUNK_BYTES = 256 * 1024
# Already-compressed media gain nothing from deflate; store them (faster, streams sooner).
_STORED_MEDIA_TYPES = ("video/", "image/")


@dataclass(frozen=True)
class ZipMember:
    """One file of the ZIP: its name inside it, its media type, its size, how to read it."""

    name: str
    media_type: str
    size: int
    open: Callable[[], IO[bytes]]


def listed_result_names(manifest: dict[str, Any]) -> list[str]:
    """The result files an analysis may serve (and zip): manifest.json and the clean names its
    manifest lists, each once. Names the engine wrote are checked: only these are ever served."""
    names = {"manifest.json": None}
    for record in (manifest or {}).get("files") or []:
        name = clean_result_name(record.get("path")) if isinstance(record, dict) else None
        if name is not None:
            names.setdefault(name, None)
    return list(names)


def archive_storage_name(results_dir: str) -> str:
    """The storage name of an attempt folder's prebuilt ZIP."""
    return f"{results_dir}/{ARCHIVE_NAME}"


def prebuilt_archive_exists(results_dir: str) -> bool:
    """Whether the worker prebuilt the ZIP of this published results folder.

    Object store: only what `media_publish_tree` uploaded is there, and the worker removes any
    file of this name the engine wrote before uploading. Local disk: a folder published before
    ZIPs were prebuilt holds whatever its engine child wrote, so only a regular file (never a
    symlink, in no symlinked folder) counts."""
    name = archive_storage_name(results_dir)
    if storage.store_is_remote():
        return storage.media_exists(name=name)
    try:
        folder = storage.media_local_path(results_dir)
        path = storage.media_local_path(name)
        return (
            not folder.is_symlink()
            and stat_module.S_ISREG(path.lstat().st_mode)
            and path.resolve().parent == folder.resolve()
        )
    except (OSError, storage.MediaMissing):
        return False


def _compression(media_type: str) -> int:
    return zipfile.ZIP_STORED if media_type.startswith(_STORED_MEDIA_TYPES) else zipfile.ZIP_DEFLATED


def _write_members(archive: zipfile.ZipFile, members: list[ZipMember]) -> Iterator[None]:
    """Write each member in chunks, yielding after each chunk (so a stream can hand it on)."""
    for member in members:
        info = zipfile.ZipInfo(member.name)
        info.file_size = member.size  # decides ZIP64 before the data is written
        info.compress_type = _compression(member.media_type)
        with member.open() as reader, archive.open(info, mode="w") as writer:
            while chunk := reader.read(ZIP_CHUNK_BYTES):
                writer.write(chunk)
                yield None
        yield None


class _ZipSink:
    """A write-only file for zipfile that hands the written bytes to a generator."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        # Never called (ZipFile leaves a file object it was given open); zipfile's type for a
        # writable file asks for it.
        return None

    def pending(self) -> int:
        return sum(map(len, self.chunks))

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = []
        return data


def zip_stream(members: list[ZipMember]) -> Iterator[bytes]:
    """The ZIP of `members`, as chunks of about ZIP_CHUNK_BYTES (for a streamed response)."""
    sink = _ZipSink()
    with zipfile.ZipFile(sink, mode="w", allowZip64=True) as archive:
        for _ in _write_members(archive, members):
            if sink.pending() >= ZIP_CHUNK_BYTES:
                yield sink.take()
    yield sink.take()


def zip_build_file(*, path: Path, members: list[ZipMember]) -> int:
    """Write the ZIP of `members` to `path` (complete, or not there: written under a temporary
    name and renamed); its size in bytes."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with zipfile.ZipFile(partial, mode="w", allowZip64=True) as archive:
            for _ in _write_members(archive, members):
                pass
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path.stat().st_size


def local_members(*, results_dir: str, names: list[str], skip_unservable: bool) -> list[ZipMember]:
    """The members `names` read from this machine's copy of the results folder `results_dir`;
    each must be a regular file inside it, never a symlink (the engine wrote it: untrusted).
    One that is not raises Http404, or is left out with `skip_unservable` (the worker's build:
    the file view would not serve it either)."""
    members = []
    for name in names:
        try:
            path = resolve_result_path(results_dir=results_dir, name=name)
        except Http404:
            if skip_unservable:
                continue
            raise
        members.append(
            ZipMember(
                name=name, media_type=result_media_type(name), size=path.stat().st_size, open=_opener(path)
            )
        )
    return members


def stored_members(*, results_dir: str, names: list[str]) -> list[ZipMember]:
    """The members `names` read from the media store (the bucket's objects streamed): the ZIP of
    an analysis published before ZIPs were prebuilt, with MEDIA_DELIVERY accel or presigned."""
    return [
        ZipMember(
            name=name,
            media_type=result_media_type(name),
            size=storage.media_size(name=f"{results_dir}/{name}"),
            open=_stored_opener(f"{results_dir}/{name}"),
        )
        for name in names
    ]


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def _stored_opener(name: str) -> Callable[[], IO[bytes]]:
    return lambda: storage.media_open(name=name)
