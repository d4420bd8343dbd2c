"""Running FFmpeg safely: the binary from imageio-ffmpeg, argument lists (never a shell),
`-nostdin`, the file protocol only, and a timeout that kills the whole process group.

`encode_video` pipes raw RGB frames to FFmpeg through ffmpeg-python and writes a
browser-playable H.264/yuv420p MP4 with `+faststart`; `encode_videos` does that for several
same-size clips in one FFmpeg process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_TIMEOUT = 120.0
CANCEL_POLL_SECONDS = 0.1


class FFmpegError(RuntimeError):
    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class FFmpegTimeout(FFmpegError):
    pass


class FFmpegCancelled(FFmpegError):
    pass


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    override = os.environ.get("GRADCAM_FFMPEG")
    if override:
        return override
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    result = run_ffmpeg(["-version"], timeout=30, check=True)
    first_line = result.stdout.decode("utf-8", "replace").splitlines()[0]
    # "ffmpeg version 7.1 Copyright ..." -> "7.1"
    parts = first_line.split()
    return parts[2] if len(parts) > 2 else first_line


@dataclass
class FFmpegResult:
    returncode: int
    stdout: bytes
    stderr: str


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_ffmpeg(
    args: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    input_bytes: bytes | None = None,
    check: bool = True,
    cancel: threading.Event | None = None,
) -> FFmpegResult:
    """Run `ffmpeg ARGS` in its own process group; kill the group on timeout, or as soon as
    `cancel` is set (checked every CANCEL_POLL_SECONDS), raising FFmpegCancelled.

    `cancel` needs `input_bytes=None`: Popen.communicate() cannot resume writing its input after
    a timeout (a retry without the input stops feeding it; with it, it raises)."""
    if cancel is not None and input_bytes is not None:
        raise ValueError("cancel works only for runs without input bytes")
    if cancel is not None and cancel.is_set():
        raise FFmpegCancelled("FFmpeg was not started: the work was cancelled")
    # -nostats: the progress line ends in "\r", not a newline, so the log line FFmpeg prints
    # next (a showinfo frame, the final statistics) would share its line and escape our
    # line-anchored parsers on any run longer than half a second.
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *args]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            try:
                stdout, stderr = process.communicate(
                    input=input_bytes, timeout=max(0.0, min(remaining, CANCEL_POLL_SECONDS) if cancel else remaining)
                )
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise FFmpegCancelled("FFmpeg was stopped: the work was cancelled") from None
                if time.monotonic() >= deadline:
                    raise FFmpegTimeout(f"FFmpeg did not finish within {timeout:g} s") from None
    except BaseException:
        _kill_group(process)
        process.communicate()
        raise
    text = stderr.decode("utf-8", "replace")
    if check and process.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise FFmpegError(f"FFmpeg failed (exit {process.returncode}): {tail}", stderr=text)
    return FFmpegResult(process.returncode, stdout, text)


def encode_video(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    *,
    fps: float,
    crf: int = 20,
    preset: str = "veryfast",
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Encode uint8 RGB frames (N, H, W, 3) as H.264/yuv420p MP4 with +faststart.

    yuv420p needs even sizes, so odd widths/heights are padded by one pixel (edge colour).
    The file is written next to `path` and renamed into place, so a reader never sees half
    a video.
    """
    return encode_videos([(frames, path)], fps=fps, crf=crf, preset=preset, timeout=timeout)[0]


def encode_videos(
    clips: Sequence[tuple[np.ndarray, str | os.PathLike[str]]],
    *,
    fps: float,
    crf: int = 20,
    preset: str = "veryfast",
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Path]:
    """Encode several clips of the same frame size, each to its own MP4, in ONE FFmpeg process.

    The clips are piped back to back as one raw stream; a `split` filter hands it to one
    `trim` per clip, each feeding its own H.264 encoder and file. For short clips (a heatmap
    video is 16 frames) starting FFmpeg and x264 cost as much as encoding, so one process for
    all layers instead of one per layer saves most of that. Every file appears (renamed into
    place) only once FFmpeg has succeeded; on failure none of them does.
    """
    import ffmpeg  # ffmpeg-python

    if not clips:
        return []
    stacks = []
    for frames, _ in clips:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames of shape (N, H, W, 3), got {frames.dtype} {frames.shape}")
        if frames.shape[0] == 0:
            raise ValueError("cannot encode a video with no frames")
        if frames.shape[1:] != np.asarray(clips[0][0]).shape[1:]:
            raise ValueError(f"clips encoded together must share a frame size: {frames.shape[1:]} vs {np.asarray(clips[0][0]).shape[1:]}")
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        stacks.append(frames)
    height, width = stacks[0].shape[1:3]
    targets = [Path(path) for _, path in clips]
    partials = []
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        partials.append(target.with_name(f".{target.name}.partial.mp4"))
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
    branches = source.split() if len(stacks) > 1 else None
    outputs = []
    first_frame = 0
    for index, (frames, partial) in enumerate(zip(stacks, partials)):
        if branches is None:
            stream = source
        else:
            stream = branches[index].trim(start_frame=first_frame, end_frame=first_frame + len(frames)).setpts("PTS-STARTPTS")
        first_frame += len(frames)
        outputs.append(
            stream.output(
                str(partial),
                vcodec="libx264",
                pix_fmt="yuv420p",
                crf=crf,
                preset=preset,
                movflags="+faststart",
                an=None,
                **{"fps_mode": "passthrough"},
            )
        )
    args = ffmpeg.merge_outputs(*outputs).overwrite_output().get_args()
    raw = b"".join(np.ascontiguousarray(frames).tobytes() for frames in stacks)
    try:
        run_ffmpeg(["-loglevel", "error", *args], timeout=timeout, input_bytes=raw)
        for partial, target in zip(partials, targets):
            os.replace(partial, target)
    finally:
        for partial in partials:
            if partial.exists():
                partial.unlink()
    return targets
