"""Running FFmpeg safely: the binary from imageio-ffmpeg, argument lists (never a shell),
`-nostdin`, the file protocol only, and a timeout that kills the whole process group.

Everything that hardens FFmpeg against an untrusted input lives here: `VideoLimits` (what an
uploaded video may be), `hardened_input_args` (file protocol only, a demuxer allowlist,
`-max_pixels`) and the helpers that read FFmpeg's log without trusting the text a file can
put in it (`after_input_dump`, `last_match`, `NO_METADATA_ARGS`). gradcam3d.video and
gradcam3d.seeking both build on them.

`encode_video` pipes raw RGB frames to FFmpeg through ffmpeg-python and writes a
browser-playable H.264/yuv420p MP4 with `+faststart`; `encode_videos` does that for several
same-size clips in one FFmpeg process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TIMEOUT = 120.0
CANCEL_POLL_SECONDS = 0.1

# Demuxer names as FFmpeg spells them; a demuxer whose name list ("mov,mp4,m4a,...") shares
# one entry with this list is accepted. Deliberately absent: hls, dash, concat, image2*,
# tty, lavfi, subfile, *_pipe, data, rawvideo, avisynth, and every device.
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",
    "mp4",
    "m4a",
    "3gp",
    "3g2",
    "mj2",
    "matroska",
    "webm",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "mpegvideo",
    "ogg",
    "asf",
    "gif",
    "h264",
    "hevc",
    "m4v",
    "ivf",
    "obu",
)
# Output options that keep the file's own tags and chapters out of FFmpeg's output dump.
NO_METADATA_ARGS: tuple[str, ...] = ("-map_metadata", "-1", "-map_chapters", "-1")
STREAM_MAPPING_RE = re.compile(r"^Stream mapping:[ \t]*$", re.MULTILINE)
# One `showinfo` filter line per frame that reaches it: its number n (from 0) and its pts.
SHOWINFO_RE = re.compile(
    r"^\[Parsed_showinfo_\d+ @ [^\]\n]*\] n:[ \t]*(?P<n>\d+) pts:[ \t]*(?P<pts>-?\d+|NOPTS) pts_time:(?P<t>\S+)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class VideoLimits:
    """What an uploaded video may be. Probing runs within `timeout_seconds`; decoding and
    transcoding a whole (legitimately long) video get `processing_timeout_seconds`."""

    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 600.0
    max_pixels: int = 3840 * 2160
    max_frames: int = 36_000
    timeout_seconds: float = 60.0
    processing_timeout_seconds: float = 900.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hardened_input_args(*, path: str | os.PathLike[str], limits: VideoLimits) -> list[str]:
    """FFmpeg input options for an untrusted file, ending with `-i file:<absolute path>`."""
    return [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ",".join(ALLOWED_DEMUXERS),
        "-max_pixels",
        str(int(limits.max_pixels)),
        "-i",
        "file:" + str(Path(path).resolve()),
    ]


def last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match: FFmpeg prints its statistics after every dump of the file's metadata."""
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def after_input_dump(stderr: str) -> str:
    """The stderr after the real `Stream mapping:` line (the last one: forged copies can only
    sit in the input dump before it), or "" when FFmpeg stopped before mapping streams."""
    mapping = last_match(STREAM_MAPPING_RE, stderr)
    return stderr[mapping.end() :] if mapping else ""


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
                    input=input_bytes,
                    timeout=max(0.0, min(remaining, CANCEL_POLL_SECONDS) if cancel else remaining),
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
    if not clips:
        return []
    stacks = _even_sized_clips([np.asarray(frames) for frames, _ in clips])
    targets = [Path(path) for _, path in clips]
    partials = []
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        partials.append(target.with_name(f".{target.name}.partial.mp4"))
    args = _split_encoder_args(stacks=stacks, partials=partials, fps=fps, crf=crf, preset=preset)
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


def _even_sized_clips(clips: list[np.ndarray]) -> list[np.ndarray]:
    """Check the clips (uint8 RGB, one frame size) and pad odd sides by one edge pixel:
    yuv420p needs even widths and heights."""
    padded = []
    for frames in clips:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 frames of shape (N, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        if frames.shape[0] == 0:
            raise ValueError("cannot encode a video with no frames")
        if frames.shape[1:] != clips[0].shape[1:]:
            raise ValueError(
                f"clips encoded together must share a frame size: {frames.shape[1:]} vs {clips[0].shape[1:]}"
            )
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        padded.append(frames)
    return padded


def _split_encoder_args(
    *, stacks: list[np.ndarray], partials: list[Path], fps: float, crf: int, preset: str
) -> list[str]:
    """FFmpeg arguments: raw RGB on stdin, split and trimmed into one H.264 MP4 per clip."""
    import ffmpeg  # ffmpeg-python

    height, width = stacks[0].shape[1:3]
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
    branches = source.split() if len(stacks) > 1 else None
    outputs = []
    first_frame = 0
    for index, (frames, partial) in enumerate(zip(stacks, partials)):
        if branches is None:
            stream = source
        else:
            stream = (
                branches[index]
                .trim(start_frame=first_frame, end_frame=first_frame + len(frames))
                .setpts("PTS-STARTPTS")
            )
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
                fps_mode="passthrough",
            )
        )
    return ffmpeg.merge_outputs(*outputs).overwrite_output().get_args()
