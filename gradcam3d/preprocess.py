"""Turning a video into a model input, as the original tool did by default (NumPy/OpenCV/FFmpeg,
no TensorFlow).

Default (the original tool): every 2nd decoded frame starting from the second (0-based 1, 3,
5, ...), then T of those picked evenly with `np.linspace(0, len(kept) - 1, T)` truncated to
int, resized (stretched) to the model's H x W, RGB scaled to [0, 1].

How it is fast: the probe counts the real frames; the T source indices are computed from that
count; ONE FFmpeg process decodes the video, keeps only those T frames with its `select` filter
(which counts real decoded frames), resizes just them and pipes raw RGB into NumPy. FFmpeg also
reports how many frames it decoded; if that differs from the probe's packet count (rare:
broken or field-coded streams) the selection is recomputed from the decoded count and run once
more, so the selection always follows the real decoded frames.

A long video (MP4/MOV or Matroska/WebM, at least a few hundred frames) is instead decoded from
the keyframe before each selected frame when that decodes well under half the frames: the
selected frames are found by their exact timestamps and verified, and anything unexpected
falls back to the straight decode (gradcam3d.seeking).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

import gradcam3d.seeking as seeking
from gradcam3d.errors import Refusal, VideoRefused
from gradcam3d.ffmpeg import VideoLimits, encode_video
from gradcam3d.video import DecodedFrames, decode_frames, probe_video

ResizeMode = Literal["stretch", "center_crop", "letterbox"]
Scaling = Literal["unit", "symmetric", "raw", "mean_std"]
RESIZE_MODES: tuple[str, ...] = ("stretch", "center_crop", "letterbox")
SCALINGS: tuple[str, ...] = ("unit", "symmetric", "raw", "mean_std")
# An analysis may leave the scaling to the model ("auto", or no scaling at all): the one its
# inspection suggests from its leading Rescaling/Normalization layers, one of these.
SCALING_AUTO = "auto"
MODEL_SCALINGS: tuple[str, ...] = ("unit", "symmetric", "raw")
_SCALING_RANGES = {"unit": "values in [0, 1]", "symmetric": "values in [-1, 1]", "raw": "values in [0, 255]"}
PREVIEW_FPS = 3.0  # the original tool showed the preprocessed clip at 3 fps


class PreprocessParamsRefused(Refusal):
    pass


@dataclass(frozen=True)
class PreprocessParams:
    """How a video becomes a model input.

    frame_stride / frame_offset: kept = decoded_frames[offset::stride] (original: 2 and 1).
    resize_mode: "stretch" (original), "center_crop" (fill, crop the overflow) or "letterbox"
    (fit, pad with black). scaling: "unit" [0, 1] (original), "symmetric" [-1, 1], "raw" 0-255,
    or "mean_std": (value / 255 - mean) / std per channel (mean/std in [0, 1] units, one value
    or one per model channel). An analysis may leave it to the model: "auto" is replaced by
    the name `choose_scaling` picks (`with_scaling`) before any video is preprocessed.
    """

    frame_stride: int = 2
    frame_offset: int = 1
    resize_mode: str = "stretch"
    scaling: str = "unit"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        def refuse(message: str) -> None:
            raise PreprocessParamsRefused(message, code="bad_params")

        if (
            not isinstance(self.frame_stride, int)
            or isinstance(self.frame_stride, bool)
            or self.frame_stride < 1
        ):
            refuse(f"frame_stride must be an integer >= 1, not {self.frame_stride!r}.")
        if (
            not isinstance(self.frame_offset, int)
            or isinstance(self.frame_offset, bool)
            or self.frame_offset < 0
        ):
            refuse(f"frame_offset must be an integer >= 0, not {self.frame_offset!r}.")
        if self.resize_mode not in RESIZE_MODES:
            refuse(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, not {self.resize_mode!r}.")
        if self.scaling not in SCALINGS and self.scaling != SCALING_AUTO:
            refuse(f"scaling must be one of {', '.join(SCALINGS)}, not {self.scaling!r}.")
        if self.scaling == "mean_std":
            for name in ("mean", "std"):
                values = getattr(self, name)
                if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    refuse(f"scaling mean_std needs {name} as one number or one per channel.")
            if any(v <= 0 for v in self.std or ()):
                refuse("std values must be positive.")
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean or ()))
            object.__setattr__(self, "std", tuple(float(v) for v in self.std or ()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PreprocessParams:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise PreprocessParamsRefused(
                f"Unknown preprocessing options: {', '.join(sorted(unknown))}.", code="bad_params"
            )
        for name in ("mean", "std"):
            if isinstance(data.get(name), (int, float)):
                data[name] = (data[name],)
            elif data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    def with_scaling(self, scaling: str) -> PreprocessParams:
        return replace(self, scaling=scaling)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("mean", "std"):
            values[name] = list(values[name]) if values[name] is not None else None
        return values


@dataclass
class PreprocessedClip:
    """`x` float32 (1, T, H, W, C) model input; `frames_rgb` uint8 (T, H, W, 3) the resized
    frames before scaling (always RGB, also for grayscale models); for each model frame its
    index among ALL decoded frames and its time in seconds from the start of the video."""

    x: np.ndarray
    frames_rgb: np.ndarray
    source_frame_indices: list[int]
    timestamps: list[float]
    source_fps: float | None
    source_frame_count: int
    params: PreprocessParams
    probe: dict[str, Any] = field(default_factory=dict)
    # "sequential" (every frame decoded), "seek" (from the keyframe before each selected
    # frame), or "sequential (seeking did not verify)".
    decode_strategy: str = "sequential"

    def input_range(self) -> list[float]:
        """[min, max] of the model input `x`: what the model really receives."""
        low, high = float(np.min(self.x)), float(np.max(self.x))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"the model input holds non-finite values ({low}, {high})")
        return [low, high]

    def summary(self) -> dict[str, Any]:
        return {
            "source_frame_indices": self.source_frame_indices,
            "timestamps": self.timestamps,
            "source_fps": self.source_fps,
            "source_frame_count": self.source_frame_count,
            "decode_strategy": self.decode_strategy,
        }


def choose_scaling(*, requested: str | None, inspection: Mapping[str, Any]) -> dict[str, str]:
    """Which scaling an analysis uses, who chose it and why: {"name", "source", "reason",
    "suggested"}.

    The caller's scaling is kept when given ("source": "caller"); None or "auto" takes the one
    the model's inspection suggests ("source": "model"), so a model that starts with
    Rescaling(1/255) gets 0-255 values instead of having them divided twice. An unknown
    requested name is returned as it is, for PreprocessParams to refuse.
    """
    suggested = inspection.get("suggested_scaling") or "unit"
    if suggested not in MODEL_SCALINGS:
        # The inspection and this list are one contract; a new name must be handled here.
        raise ValueError(f"the model inspection suggests an unknown scaling {suggested!r}")
    model_reason = str(inspection.get("scaling_reason") or "")
    if requested is None or requested == SCALING_AUTO:
        reason = model_reason or _default_scaling_reason(
            suggested=suggested, inspected="suggested_scaling" in inspection
        )
        return {"name": suggested, "source": "model", "reason": reason, "suggested": suggested}
    reason = "Chosen by the caller."
    if requested != suggested and model_reason:
        reason = f"Chosen by the caller, although the model suggests '{suggested}': {model_reason}"
    return {"name": str(requested), "source": "caller", "reason": reason, "suggested": suggested}


def _default_scaling_reason(*, suggested: str, inspected: bool) -> str:
    if not inspected:
        return (
            f"The model's inspection makes no scaling suggestion: {_SCALING_RANGES[suggested]}, the default."
        )
    if suggested == "unit":
        return f"The model's inspection suggests no other scaling: {_SCALING_RANGES[suggested]}, the default."
    return f"The model's inspection suggests {_SCALING_RANGES[suggested]}."


def select_source_indices(
    *, frame_count: int, frames_needed: int, stride: int = 2, offset: int = 1
) -> list[int]:
    """Indices into all decoded frames, as the original tool picked them: kept =
    frames[offset::stride]; T of them at `linspace(0, len(kept) - 1, T)` truncated to int.
    Refuses when fewer frames are kept than the model needs (repeating frames would show
    the model a motion that never happened)."""
    kept = list(range(offset, frame_count, stride))
    if len(kept) < frames_needed:
        raise VideoRefused(
            f"The video has {frame_count} frames; keeping every {_ordinal(stride)} frame from frame "
            f"{offset} leaves {len(kept)}, but the model needs {frames_needed}. Use a longer video or "
            f"a smaller frame stride.",
            code="video_too_short",
        )
    positions = np.linspace(0, len(kept) - 1, frames_needed).astype(int)
    return [kept[position] for position in positions]


def _ordinal(number: int) -> str:
    return {1: "", 2: "2nd", 3: "3rd"}.get(number, f"{number}th") or "single"


def resize_filters(*, mode: str, width: int, height: int) -> list[str]:
    """FFmpeg filters resizing to exactly width x height in the given mode (area averaging,
    like cv2.INTER_AREA, which the demo model was trained with)."""
    if mode == "stretch":
        return [f"scale={width}:{height}:flags=area"]
    if mode == "center_crop":
        return [
            f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=area",
            f"crop={width}:{height}",
        ]
    if mode == "letterbox":
        return [
            f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags=area",
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black",
        ]
    raise ValueError(f"unknown resize mode {mode!r}")


def resize_with_cv2(frames: np.ndarray, *, mode: str, width: int, height: int) -> np.ndarray:
    """The same geometry as `resize_filters`, with OpenCV on frames already in memory."""
    import cv2

    out = np.zeros((len(frames), height, width, 3), dtype=np.uint8)
    source_h, source_w = frames.shape[1:3]
    for index, frame in enumerate(frames):
        if mode == "stretch":
            out[index] = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            continue
        scale = (max if mode == "center_crop" else min)(width / source_w, height / source_h)
        new_w = max(1, int(round(source_w * scale)))
        new_h = max(1, int(round(source_h * scale)))
        resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)
        if mode == "center_crop":
            top, left = (new_h - height) // 2, (new_w - width) // 2
            out[index] = resized[top : top + height, left : left + width]
        else:
            top, left = (height - new_h) // 2, (width - new_w) // 2
            out[index, top : top + new_h, left : left + new_w] = resized
    return out


def scale_frames(frames_rgb: np.ndarray, *, channels: int, params: PreprocessParams) -> np.ndarray:
    """uint8 RGB (T, H, W, 3) -> float32 (T, H, W, channels) scaled as `params.scaling` says."""
    values = frames_rgb.astype(np.float32)
    if channels == 1:
        # ITU-R BT.601 luma, as cv2.cvtColor(RGB2GRAY) computes it.
        values = values @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        values = values[..., None]
    elif channels != 3:
        raise VideoRefused(
            f"The model expects {channels} channels per frame; only 1 or 3 are supported.",
            code="bad_channels",
        )
    if params.scaling == "unit":
        return values / np.float32(255.0)
    if params.scaling == "symmetric":
        return values / np.float32(127.5) - np.float32(1.0)
    if params.scaling == "raw":
        return values
    mean = np.asarray(params.mean, dtype=np.float32)
    std = np.asarray(params.std, dtype=np.float32)
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise PreprocessParamsRefused(
            f"mean and std need 1 or {channels} values for this model, not {mean.size} and {std.size}.",
            code="bad_params",
        )
    return ((values / np.float32(255.0)) - mean) / std


class _EitherEvent(threading.Event):
    """Set when it is set itself or when the event it follows is."""

    def __init__(self, follows: threading.Event | None) -> None:
        super().__init__()
        self._follows = follows

    def is_set(self) -> bool:
        return super().is_set() or (self._follows is not None and self._follows.is_set())


def _file_size(path: str | os.PathLike[str]) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # the probe says what is wrong with it


def validate_input_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(input_shape) != 4 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in input_shape):
        raise VideoRefused(
            f"The model input shape must be (T, H, W, C) with positive sizes, not {input_shape!r}.",
            code="bad_shape",
        )
    frames, height, width, channels = (int(v) for v in input_shape)
    if channels not in (1, 3):
        raise VideoRefused(
            f"The model expects {channels} channels per frame; only 1 or 3 are supported.",
            code="bad_channels",
        )
    return frames, height, width, channels


def preprocess_video(
    path: str | os.PathLike[str],
    *,
    input_shape: tuple[int, ...],  # (T, H, W, C), checked by validate_input_shape
    params: PreprocessParams = PreprocessParams(),
    limits: VideoLimits = VideoLimits(),
    resize_engine: Literal["ffmpeg", "cv2"] = "ffmpeg",
    seek: bool = True,
    cancel: threading.Event | None = None,
) -> PreprocessedClip:
    """Probe (enforcing limits), pick the T source frames, decode just those in one FFmpeg
    process, resize and scale them. A long video is decoded by seeking to the keyframe before
    each selected frame when that is exact and clearly cheaper (gradcam3d.seeking; `seek=False`
    always decodes straight through). `resize_engine="cv2"` pipes the selected frames at full
    size and resizes them with OpenCV (kept for measuring; FFmpeg is the default). Setting
    `cancel` stops the FFmpeg run in progress (gradcam3d.ffmpeg.FFmpegCancelled)."""
    frames_needed, height, width, channels = validate_input_shape(tuple(input_shape))
    if params.scaling == SCALING_AUTO:
        raise ValueError("scaling 'auto' must be resolved with choose_scaling before preprocessing")
    selection = _FrameSelection(frames_needed=frames_needed, width=width, height=height, params=params)
    seeking_allowed = resize_engine == "ffmpeg" and seek
    info, raw_index = _probe_while_indexing(path, limits=limits, index=seeking_allowed, cancel=cancel)
    decoded, decode_strategy = None, "sequential"
    if seeking_allowed and seeking.seeking_applies(info):
        decoded, decode_strategy = _decode_by_seeking(
            path, info=info, raw_index=raw_index, selection=selection, limits=limits, cancel=cancel
        )
    frame_count, indices = info["frame_count"], selection.indices(info["frame_count"])
    if decoded is None:
        decoded, frame_count, indices = _decode_straight(
            path, info=info, selection=selection, resize_engine=resize_engine, limits=limits, cancel=cancel
        )
    if len(decoded.frames) != frames_needed:
        raise VideoRefused(
            f"Only {len(decoded.frames)} of the {frames_needed} selected frames could be decoded; the video may be damaged.",
            code="video_undecodable",
        )
    if resize_engine == "cv2":
        frames_rgb = resize_with_cv2(decoded.frames, mode=params.resize_mode, width=width, height=height)
    else:
        frames_rgb = decoded.frames.copy()  # own, writable memory rather than a view of FFmpeg's bytes
    x = scale_frames(frames_rgb, channels=channels, params=params)[None]
    return PreprocessedClip(
        x=np.ascontiguousarray(x, dtype=np.float32),
        frames_rgb=frames_rgb,
        source_frame_indices=[int(i) for i in indices],
        timestamps=_model_frame_timestamps(decoded=decoded, info=info, indices=indices),
        source_fps=info["fps"],
        source_frame_count=int(frame_count),
        params=params,
        probe=info,
        decode_strategy=decode_strategy,
    )


@dataclass(frozen=True)
class _FrameSelection:
    """Which frames the model needs and at what size: the source indices follow the count."""

    frames_needed: int
    width: int
    height: int
    params: PreprocessParams

    def indices(self, frame_count: int) -> list[int]:
        return select_source_indices(
            frame_count=frame_count,
            frames_needed=self.frames_needed,
            stride=self.params.frame_stride,
            offset=self.params.frame_offset,
        )

    def filters(self) -> list[str]:
        return resize_filters(mode=self.params.resize_mode, width=self.width, height=self.height)


def _probe_while_indexing(
    path: str | os.PathLike[str], *, limits: VideoLimits, index: bool, cancel: threading.Event | None
) -> tuple[dict[str, Any], Any]:
    """(probe, raw packet index or None). A big file is indexed for seeking while it is probed
    (both only demux it); a refused probe stops the index rather than waiting for it."""
    index_cancel = _EitherEvent(cancel)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcam3d-index") as background:
        speculative_index = (
            background.submit(seeking.read_packet_index, path, limits=limits, cancel=index_cancel)
            if index and seeking.SPECULATIVE_INDEX_BYTES <= _file_size(path) <= limits.max_bytes
            else None
        )
        try:
            info = probe_video(path, limits=limits, cancel=cancel)
        except BaseException:
            index_cancel.set()
            raise
        return info, speculative_index.result() if speculative_index is not None else None


def _decode_by_seeking(
    path: str | os.PathLike[str],
    *,
    info: dict[str, Any],
    raw_index: Any,
    selection: _FrameSelection,
    limits: VideoLimits,
    cancel: threading.Event | None,
) -> tuple[DecodedFrames | None, str]:
    """(the selected frames decoded from the keyframe before each, "seek"), or None when
    seeking would not be exact or clearly cheaper, or did not verify (the caller then decodes
    straight through), with the decode strategy to record."""
    frame_count = info["frame_count"]
    indices = selection.indices(frame_count)
    if raw_index is None:
        raw_index = seeking.read_packet_index(path, limits=limits, cancel=cancel)
    index = seeking.checked_packet_index(raw_index, frame_count=frame_count)
    if index is None:
        return None, "sequential"
    plan = seeking.plan_seeks(index, positions=indices, seeks_by_pts=seeking.container_seeks_by_pts(info))
    if plan is None:
        return None, "sequential"
    decoded = seeking.decode_by_seeking(
        path,
        plan=plan,
        time_base=index.time_base,
        start_seconds=float(info.get("start_seconds") or 0.0),
        size=(selection.width, selection.height),
        filters=selection.filters(),
        source_pixels=int(info["width"]) * int(info["height"]),
        limits=limits,
        cancel=cancel,
    )
    return decoded, "seek" if decoded is not None else "sequential (seeking did not verify)"


def _decode_straight(
    path: str | os.PathLike[str],
    *,
    info: dict[str, Any],
    selection: _FrameSelection,
    resize_engine: str,
    limits: VideoLimits,
    cancel: threading.Event | None,
) -> tuple[DecodedFrames, int, list[int]]:
    """(decoded frames, frame count, their source indices) from one pass over every frame. If
    the decoder produced a different number of frames than the probe counted packets, select
    again from its count."""
    frame_count = info["frame_count"]
    for _attempt in range(2):
        indices = selection.indices(frame_count)
        if resize_engine == "ffmpeg":
            decoded = decode_frames(
                path,
                size=(selection.width, selection.height),
                select=indices,
                limits=limits,
                filters=selection.filters(),
                cancel=cancel,
            )
        else:
            decoded = decode_frames(
                path,
                select=indices,
                limits=limits,
                source_size=(info["width"], info["height"]),
                cancel=cancel,
            )
        if decoded.decoded_count is None or decoded.decoded_count == frame_count:
            break
        # The probe counted packets; the decoder produced a different number of frames.
        frame_count = decoded.decoded_count
    return decoded, frame_count, indices


def _model_frame_timestamps(
    *, decoded: DecodedFrames, info: dict[str, Any], indices: list[int]
) -> list[float]:
    """Seconds from the start of the video: each frame's pts, else its index over the frame rate."""
    start = float(info.get("start_seconds") or 0.0)
    fps = info["fps"]
    pts_seconds = decoded.pts_seconds + [None] * (len(indices) - len(decoded.pts_seconds))
    if not fps and any(pts is None for pts in pts_seconds):
        # Never a NaN in the manifest: without a time there is nothing honest to show.
        raise VideoRefused(
            "The video's frames carry no timestamps and it declares no frame rate, so the model "
            "frames cannot be placed in time. Re-encode it (for example to MP4) and upload it again.",
            code="video_no_timestamps",
        )
    return [
        round(pts - start, 6) if pts is not None else round(index / fps, 6)
        for pts, index in zip(pts_seconds, indices)
    ]


def write_preview(clip: PreprocessedClip, *, out_dir: str | os.PathLike[str]) -> Path:
    """DIR/preview.mp4: the T model frames at 3 fps (as the original tool showed them)."""
    return encode_video(clip.frames_rgb, Path(out_dir) / "preview.mp4", fps=PREVIEW_FPS)
