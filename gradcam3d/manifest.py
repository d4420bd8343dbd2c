"""The manifest's bookkeeping (the parameters themselves are gradcam3d.params).

The manifest (docs/engine-contract.md) is what the platform stores and what lets anyone verify a
past result: every parameter with its default filled in, engine versions, input hashes, and
every file written with its role, size and sha256. It is written last and atomically, so a
folder with a manifest.json is a complete analysis.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcam3d.version import __version__

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
    ".npz": "application/octet-stream",
    ".npy": "application/octet-stream",
}


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def engine_versions() -> dict[str, str]:
    import cv2
    import numpy

    from gradcam3d.ffmpeg import ffmpeg_version
    from gradcam3d.tf import import_keras, import_tensorflow

    tf, keras = import_tensorflow(), import_keras()

    return {
        "gradcam3d": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ffmpeg": ffmpeg_version(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "gpu": ", ".join(device.name for device in tf.config.list_physical_devices("GPU")) or "none",
    }


@dataclass
class FileRecorder:
    """Collects every file an analysis writes; hashes them once at the end."""

    root: Path
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        path: Path,
        *,
        role: str,
        layer: str | None = None,
        frame: int | None = None,
        class_index: int | None = None,
        **extra: Any,
    ) -> None:
        relative = path.relative_to(self.root).as_posix()
        self.entries.append(
            {
                "path": relative,
                "role": role,
                "layer": layer,
                "frame": frame,
                "class": class_index,
                "media_type": MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                **extra,
            }
        )

    def finalise(self) -> list[dict[str, Any]]:
        for entry in self.entries:
            full = self.root / entry["path"]
            entry["bytes"] = full.stat().st_size
            entry["sha256"] = sha256_file(full)
        return self.entries


def save_npz_deterministic(path: Path, arrays: dict[str, Any]) -> Path:
    """Like numpy.savez, but byte-identical for identical arrays (fixed zip timestamps), so a
    re-run of an analysis can be verified by the files' sha256 alone."""
    import zipfile

    import numpy as np

    partial = path.with_name(f".{path.name}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(arrays[key]), allow_pickle=False)
    os.replace(partial, path)
    return path


def write_manifest(*, out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write DIR/manifest.json atomically (temporary file, then rename)."""
    target = out_dir / MANIFEST_NAME
    partial = out_dir / f".{MANIFEST_NAME}.partial"
    partial.write_text(json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False))
    os.replace(partial, target)
    return target
