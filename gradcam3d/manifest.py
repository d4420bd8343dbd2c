"""Analysis parameters (defaults, validation) and the manifest's bookkeeping.

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

from gradcam3d import __version__
from gradcam3d.errors import Refusal

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

DEFAULT_PARAMS: dict[str, Any] = {
    "expected_class": None,  # the true class, if the user knows it
    "layers": None,  # full paths of the Conv3D layers to explain; None = all of them
    "method": "gradcam",  # gradcam | gradcam++ | layercam | hirescam
    # gradcam, gradcam++: global (over T,H,W, the original tool) | temporal (over H,W per t).
    # layercam, hirescam: no pooling, recorded as None ("temporal" is refused for them).
    "pooling": "global",
    "bbox_threshold": None,  # None = Otsu per frame; else a fraction of the map's maximum
    "min_box_area": 1,  # smallest connected component (model pixels) that gets a box
    "colormap": "jet",
    "alpha": 0.3,
    "class_labels": None,  # list of labels, index = class
    "top_k": 5,
    "video_fps": 4.0,  # heatmap videos and the preprocessed clip (same rate: they play in sync)
    "image_format": "png",  # png | jpeg
    "inference_frames": "key",  # key = start/middle/end frames, all = every frame
    "display_min_height": 224,  # images are upscaled by an integer factor to at least this
    "preprocess": {},  # gradcam3d.preprocess.PreprocessParams fields
    "limits": {},  # gradcam3d.video.VideoLimits fields
}

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
    ".npz": "application/octet-stream",
    ".npy": "application/octet-stream",
}


def _refuse(message: str) -> None:
    raise Refusal(message, code="bad_params")


def _number(name: str, value: Any, *, low: float, high: float, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _refuse(f"The parameter '{name}' must be a number.")
    if integer and int(value) != value:
        _refuse(f"The parameter '{name}' must be a whole number.")
    if not low <= value <= high:
        _refuse(f"The parameter '{name}' must be between {low:g} and {high:g}.")
    return int(value) if integer else float(value)


def normalise_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter with defaults filled in and values checked (model-independent checks).

    Unknown keys are refused: a misspelt option silently ignored would give a result the user
    did not ask for.
    """
    from gradcam3d.cam import method_pooling
    from gradcam3d.render import COLORMAPS

    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        _refuse(f"Unknown analysis parameter(s): {', '.join(unknown)}.")
    merged = {**DEFAULT_PARAMS, **params}
    try:
        # Recorded as the method really runs: None for the element-wise methods.
        merged["pooling"] = method_pooling(method=merged["method"], pooling=merged["pooling"])
    except ValueError as exc:
        _refuse(str(exc))
    if merged["colormap"] not in COLORMAPS:
        _refuse(f"Unknown colormap '{merged['colormap']}'; choose one of {', '.join(sorted(COLORMAPS))}.")
    if merged["image_format"] not in ("png", "jpeg"):
        _refuse("The image format must be 'png' or 'jpeg'.")
    if merged["inference_frames"] not in ("key", "all"):
        _refuse("inference_frames must be 'key' (start, middle, end) or 'all'.")
    merged["alpha"] = _number("alpha", merged["alpha"], low=0.0, high=1.0)
    merged["video_fps"] = _number("video_fps", merged["video_fps"], low=0.5, high=60.0)
    merged["top_k"] = _number("top_k", merged["top_k"], low=1, high=1000, integer=True)
    merged["min_box_area"] = _number("min_box_area", merged["min_box_area"], low=1, high=10**6, integer=True)
    merged["display_min_height"] = _number("display_min_height", merged["display_min_height"], low=1, high=2160, integer=True)
    if merged["bbox_threshold"] is not None:
        value = _number("bbox_threshold", merged["bbox_threshold"], low=0.0, high=1.0)
        if value >= 1.0:
            _refuse("The box threshold is a fraction of the maximum heat and must be below 1.")
        merged["bbox_threshold"] = value
    if merged["expected_class"] is not None:
        merged["expected_class"] = _number("expected_class", merged["expected_class"], low=0, high=10**9, integer=True)
    layers = merged["layers"]
    if layers is not None:
        if isinstance(layers, str) or not all(isinstance(name, str) for name in layers) or not layers:
            _refuse("'layers' must be a non-empty list of Conv3D layer paths.")
        merged["layers"] = list(dict.fromkeys(layers))  # keep order, drop repeats
    labels = merged["class_labels"]
    if labels is not None:
        if isinstance(labels, dict):  # {"0": "Basketball"} from a class map
            try:
                size = max(int(key) for key in labels) + 1 if labels else 0
                labels = [str(labels.get(str(i), labels.get(i, "")) or "") for i in range(size)]  # type: ignore[call-overload]
            except ValueError:
                _refuse("Class label keys must be class indices.")
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
            _refuse("'class_labels' must be a list of labels.")
        merged["class_labels"] = ["" if label is None else str(label) for label in labels]
    for nested in ("preprocess", "limits"):
        if not isinstance(merged[nested] or {}, dict):
            _refuse(f"'{nested}' must be an object of options.")
        merged[nested] = dict(merged[nested] or {})
    return merged


def class_label(*, params: dict[str, Any], class_index: int) -> str:
    labels = params.get("class_labels") or []
    if 0 <= class_index < len(labels) and labels[class_index]:
        return str(labels[class_index])
    return str(class_index)


def parse_class_map(text: str) -> list[str]:
    """Labels from a class map: a JSON list, or `index: label` lines (the original tool's)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except ValueError as exc:
            raise Refusal(f"The class map is not valid JSON: {exc}.", code="bad_labels") from None
        return ["" if value is None else str(value) for value in values]
    labels: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        index_text, separator, label = line.partition(":")
        if not separator or not index_text.strip().isdigit():
            raise Refusal(f"Class map line {number} is not 'index: label'.", code="bad_labels")
        labels[int(index_text)] = label.strip()
    size = max(labels) + 1 if labels else 0
    return [labels.get(index, "") for index in range(size)]


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
    import keras
    import numpy
    import tensorflow as tf

    from gradcam3d.ffmpeg import ffmpeg_version

    return {
        "gradcam3d": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ffmpeg": ffmpeg_version(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
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
