"""Comparing two raw-map files (`raw_maps.npz`, docs/engine-contract.md) array by array.

Used to verify a past analysis: its stored maps against those of a re-run. Both files were
written by an engine child that ran an untrusted model, so they are read here as hostile input,
in a child process of their own: never unpickled (`allow_pickle=False`, object arrays refused),
every member's declared size checked against limits before any of it is read, and only numeric
arrays accepted.

For each array name the result says whether the shapes match and, when they do, the maximum
absolute difference and that difference relative to the first file's maximum absolute value
(the stored map is the reference). Nothing is normalised first: identical maps give exactly 0.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from gradcam3d.errors import Refusal

DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_ARRAYS = 4096
DEFAULT_MAX_ARRAY_ELEMENTS = 64 * 1024 * 1024
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: nothing else is a map
_MAX_HEADER_BYTES = 10_000
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.npy$")


class MapsRefused(Refusal):
    pass


def _refuse(message: str) -> None:
    raise MapsRefused(message, code="bad_maps")


def _read_header(handle: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """An .npy member's shape and dtype, from its header alone (formats 1.0 and 2.0, as numpy
    writes them; 3.0 is only for non-ASCII field names, which no map has)."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=_MAX_HEADER_BYTES)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=_MAX_HEADER_BYTES)
    else:
        raise ValueError(f"unsupported .npy format {version}")
    return tuple(int(size) for size in shape), dtype


class MapsFile:
    """An open `.npz` whose members were all checked: names, count, dtypes and declared sizes."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int, max_arrays: int, max_elements: int
    ) -> None:
        self.path = Path(path)
        self.label = self.path.name
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise MapsRefused(
                f"Cannot read the maps file {self.label}: {exc.strerror}.", code="bad_maps"
            ) from None
        if size > max_bytes:
            _refuse(f"The maps file {self.label} is larger than the limit of {max_bytes} bytes.")
        try:
            self.archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError):
            raise MapsRefused(
                f"The maps file {self.label} is not an .npz archive.", code="bad_maps"
            ) from None
        members = self.archive.infolist()
        if len(members) > max_arrays:
            _refuse(f"The maps file {self.label} holds more than {max_arrays} arrays.")
        self.headers: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
        for member in members:
            self._check_member(member, max_bytes=max_bytes, max_elements=max_elements)

    def _check_member(self, member: zipfile.ZipInfo, *, max_bytes: int, max_elements: int) -> None:
        if not _MEMBER_NAME.match(member.filename):
            _refuse(f"The maps file {self.label} holds an unexpected member.")
        if member.file_size > max_bytes:  # the uncompressed size: no zip bomb gets read
            _refuse(f"An array of {self.label} is larger than the limit of {max_bytes} bytes.")
        with self.archive.open(member) as handle:
            try:
                shape, dtype = _read_header(handle)
            except (ValueError, OSError, SyntaxError):
                raise MapsRefused(
                    f"An array of {self.label} has an unreadable header.", code="bad_maps"
                ) from None
        name = member.filename[: -len(".npy")]
        if name in self.headers:
            _refuse(f"The maps file {self.label} holds two arrays named {name}.")
        if any(size < 0 for size in shape):
            _refuse(f"An array of {self.label} has an impossible shape.")
        if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
            _refuse(f"An array of {self.label} is not numeric (dtype {dtype.str}); it was not read.")
        elements = math.prod(shape)
        if elements > max_elements or elements * dtype.itemsize > max_bytes:
            _refuse(f"An array of {self.label} is larger than the limit of {max_elements} values.")
        self.headers[name] = (shape, dtype)

    def load(self, name: str) -> np.ndarray:
        with self.archive.open(f"{name}.npy") as handle:
            array = np.lib.format.read_array(handle, allow_pickle=False)
        if array.dtype.hasobject:  # checked above; never trust one check with hostile input
            _refuse(f"An array of {self.label} is not numeric; it was not read.")
        return array

    def close(self) -> None:
        self.archive.close()


def _array_difference(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    finite = bool(np.isfinite(a64).all() and np.isfinite(b64).all())
    if a64.size == 0:
        return {
            "same_shape": True,
            "shape": list(a.shape),
            "max_abs_diff": 0.0,
            "max_abs_a": 0.0,
            "max_abs_b": 0.0,
            "relative_diff": 0.0,
            "finite": finite,
        }
    difference = float(np.nanmax(np.abs(a64 - b64))) if finite else math.inf
    max_a = float(np.nanmax(np.abs(a64))) if finite else math.inf
    max_b = float(np.nanmax(np.abs(b64))) if finite else math.inf
    if not finite:
        relative = None
    elif difference == 0.0:
        relative = 0.0
    else:
        # Relative to the reference map's maximum; a reference that is all zeros is compared
        # with the other map's maximum instead (the difference is then all of it: 1.0).
        relative = difference / (max_a or max_b)
    return {
        "same_shape": True,
        "shape": list(a.shape),
        "max_abs_diff": difference if finite else None,
        "max_abs_a": max_a if finite else None,
        "max_abs_b": max_b if finite else None,
        "relative_diff": relative,
        "finite": finite,
    }


def compare_map_files(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_arrays: int = DEFAULT_MAX_ARRAYS,
    max_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS,
) -> dict[str, Any]:
    """Compare every array of A (the reference) with the array of the same name in B.

    Returns {"arrays": {name: {...}}, "only_in_a": [...], "only_in_b": [...], "identical": bool,
    "max_relative_diff": float | None}. Refuses (MapsRefused) hostile or oversized files.
    """
    limits = {"max_bytes": max_bytes, "max_arrays": max_arrays, "max_elements": max_elements}
    first = MapsFile(path_a, **limits)
    try:
        second = MapsFile(path_b, **limits)
        try:
            arrays: dict[str, dict[str, Any]] = {}
            for name in sorted(set(first.headers) & set(second.headers)):
                shape_a, shape_b = first.headers[name][0], second.headers[name][0]
                if shape_a != shape_b:
                    arrays[name] = {"same_shape": False, "shape_a": list(shape_a), "shape_b": list(shape_b)}
                    continue
                arrays[name] = _array_difference(first.load(name), second.load(name))
        finally:
            second.close()
    finally:
        first.close()
    only_in_a = sorted(set(first.headers) - set(second.headers))
    only_in_b = sorted(set(second.headers) - set(first.headers))
    relatives = [entry.get("relative_diff") for entry in arrays.values()]
    comparable = all(entry["same_shape"] and entry["relative_diff"] is not None for entry in arrays.values())
    return {
        "arrays": arrays,
        "only_in_a": only_in_a,
        "only_in_b": only_in_b,
        "identical": comparable
        and not only_in_a
        and not only_in_b
        and all(value == 0.0 for value in relatives),
        "max_relative_diff": max((value for value in relatives if value is not None), default=None)
        if comparable
        else None,
    }
