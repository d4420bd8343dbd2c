"""Probing, decoding and transcoding untrusted videos with FFmpeg (no TensorFlow here).

Every FFmpeg run on a user's file goes through `hardened_input_args`: the file protocol only
(`file:` prefix, `-protocol_whitelist file`), a demuxer allowlist (`-format_whitelist`, so a
playlist, concat script, image pattern or device never opens), `-max_pixels` for decoders,
`-nostdin`, an argument list (never a shell) and a timeout that kills the process group
(`gradcam3d.ffmpeg.run_ffmpeg`).

There is no ffprobe: `probe_video` reads the `-i` header FFmpeg prints on stderr and counts the
real packets of the first video stream by stream-copying it to the null muxer (headers' and
OpenCV's frame counts are wrong for variable-frame-rate files).

FFmpeg's stderr also carries the file's own metadata (tag names and values, which may contain
newlines), printed in the input dump before everything else we read. So nothing that decides a
limit is read from that dump: the stream fields come from the OUTPUT dump after the last
`Stream mapping:` line (with `-map_metadata -1 -map_chapters -1` it holds no text from the
file), the packet/frame statistics from the last anchored statistics line, and the measured
frame count and duration from `-progress pipe:1` on stdout, which metadata cannot reach. Only the
container name, the header duration (checked against the measured one) and the start time come
from the input dump.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradcam3d.errors import VideoRefused
from gradcam3d.ffmpeg import (
    NO_METADATA_ARGS,
    SHOWINFO_RE,
    FFmpegCancelled,
    FFmpegError,
    FFmpegResult,
    FFmpegTimeout,
    VideoLimits,
    after_input_dump,
    hardened_input_args,
    last_match,
    run_ffmpeg,
)

# ---------------------------------------------------------------------------------------------
# Parsing FFmpeg's stderr
# ---------------------------------------------------------------------------------------------
_INPUT_RE = re.compile(r"^Input #0, (?P<container>[\w,]+), from ", re.MULTILINE)
_DURATION_RE = re.compile(
    r"^\s*Duration: (?P<duration>N/A|\d+:\d+:\d+(?:\.\d+)?)(?:, start: (?P<start>-?[\d.]+))?", re.MULTILINE
)
_STREAM_RE = re.compile(
    r"^\s*Stream #0:(?P<index>\d+)\S*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<rest>.*)$",
    re.MULTILINE,
)
_SIZE_RE = re.compile(r"^(?P<w>\d+)x(?P<h>\d+)(?:\s|$)")
_INVALID_SIZE_RE = re.compile(r"Picture size (?P<w>\d+)x(?P<h>\d+) is invalid")
# Statistics lines FFmpeg prints at exit, "[in#0/mov,... @ 0x...]   Input stream #0:0 (video): ...".
_PACKETS_READ_RE = re.compile(
    r"^(?:\[in#0/[^\]\n]*\])?[ \t]*Input stream #0:\d+ \(video\): (?P<packets>\d+) packets read", re.MULTILINE
)
_FRAMES_DECODED_RE = re.compile(
    r"^(?:\[in#0/[^\]\n]*\])?[ \t]*Input stream #0:\d+ \(video\): \d+ packets read \(\d+ bytes\); "
    r"(?P<frames>\d+) frames decoded",
    re.MULTILINE,
)
_PROGRESS_FRAME_RE = re.compile(r"^frame=(?P<frames>\d+)[ \t]*$", re.MULTILINE)
_PROGRESS_TIME_RE = re.compile(r"^out_time_us=(?P<us>-?\d+)[ \t]*$", re.MULTILINE)


def _progress(stdout: bytes) -> tuple[int | None, float | None]:
    """(frames, seconds) from the last `-progress` block on stdout."""
    text = stdout.decode("ascii", "replace")
    frames = last_match(_PROGRESS_FRAME_RE, text)
    micros = last_match(_PROGRESS_TIME_RE, text)
    seconds = int(micros["us"]) / 1e6 if micros else None
    return (int(frames["frames"]) if frames else None), (seconds if seconds and seconds > 0 else None)


def _split_top_level(text: str) -> list[str]:
    """Split a stream description at commas outside parentheses/brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _parse_rate(token: str, unit: str) -> float | None:
    match = re.match(rf"^(?P<value>[\d.]+)(?P<k>k?) {unit}$", token)
    if not match:
        return None
    value = float(match["value"]) * (1000.0 if match["k"] else 1.0)
    return value if value > 0 else None


def _seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_input_header(stderr: str, *, streams_from: str | None = None) -> dict[str, Any] | None:
    """Fields of FFmpeg's `Input #0` block, or None when no input was opened. `streams_from`:
    read the video stream line from this text instead (the output dump, free of the file's
    tags); `has_audio` (informational only) always comes from the input dump."""
    container_match = _INPUT_RE.search(stderr)
    if container_match is None:
        return None
    header = stderr[container_match.start() :]
    duration_match = _DURATION_RE.search(header)
    duration = None
    start = 0.0
    if duration_match and duration_match["duration"] != "N/A":
        duration = _seconds(duration_match["duration"])
    if duration_match and duration_match["start"]:
        start = float(duration_match["start"])
    video: dict[str, Any] | None = None
    has_audio = any(stream["kind"] == "Audio" for stream in _STREAM_RE.finditer(header))
    for stream in _STREAM_RE.finditer(header if streams_from is None else streams_from):
        if stream["kind"] != "Video" or video is not None:
            continue
        parts = _split_top_level(stream["rest"])
        # Attached pictures (cover art in an audio file) are not a video.
        if "(attached pic)" in stream["rest"]:
            continue
        codec = parts[0].split()[0] if parts and parts[0] else "unknown"
        width = height = None
        pix_fmt = None
        fps = tbr = None
        for token in parts[1:]:
            size = _SIZE_RE.match(token)
            if size and width is None:
                width, height = int(size["w"]), int(size["h"])
            elif pix_fmt is None and width is None and re.match(r"^[a-z][a-z0-9_]*(\(.*\))?$", token):
                # The pixel format comes before the size: "yuv420p(progressive)", "bgra".
                pix_fmt = token.split("(")[0]
            fps = fps or _parse_rate(token, "fps")
            tbr = tbr or _parse_rate(token, "tbr")
        video = {"codec": codec, "width": width, "height": height, "pix_fmt": pix_fmt, "fps": fps or tbr}
    return {
        "container": container_match["container"],
        "duration_seconds": duration,
        "start_seconds": start,
        "video": video,
        "has_audio": has_audio,
    }


def _ffmpeg_reason(stderr: str) -> str:
    """The last meaningful FFmpeg error line, for a refusal message."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error opening input" in line and ":" in line:
            return line.split(":", 1)[1].strip()
    for line in reversed(lines):
        if any(word in line for word in ("Invalid", "invalid", "not found", "End of file", "rror")):
            return re.sub(r"^\[[^\]]*\]\s*", "", line)
    return lines[-1] if lines else "no output"


# ---------------------------------------------------------------------------------------------
# Probe
# ---------------------------------------------------------------------------------------------
def _check_file(*, path: Path, limits: VideoLimits) -> int:
    if not path.is_file():
        raise VideoRefused("The video file does not exist or is not a regular file.", code="video_missing")
    size = path.stat().st_size
    if size == 0:
        raise VideoRefused("The video file is empty (0 bytes).", code="video_empty")
    if size > limits.max_bytes:
        raise VideoRefused(
            f"The video is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.1f} MB.",
            code="video_too_big",
        )
    return size


def probe_video(
    path: str | os.PathLike[str],
    *,
    limits: VideoLimits = VideoLimits(),
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Describe a video: container, codec, width, height, fps, duration_seconds, frame_count
    (real packets of the first video stream), has_audio, pix_fmt, plus bytes and
    start_seconds. Refuses (VideoRefused) anything that is not a usable video within limits."""
    source = Path(path)
    size = _check_file(path=source, limits=limits)
    result = _run_probe(source=source, limits=limits, cancel=cancel)
    output_dump = after_input_dump(result.stderr)
    # Stream fields from the input dump (forgeable) serve only to explain a refusal.
    streams_trusted = _STREAM_RE.search(output_dump) is not None
    header = parse_input_header(result.stderr, streams_from=output_dump if streams_trusted else None)
    header, video = _video_stream_or_refuse(header=header, stderr=result.stderr)
    measured_frames, measured_seconds = _progress(result.stdout)
    duration = _measured_duration(header=header, measured_seconds=measured_seconds)
    _refuse_if_too_long(duration, limits=limits)
    _check_frame_size(video=video, stderr=result.stderr, limits=limits)
    packets = last_match(_PACKETS_READ_RE, output_dump)
    if (result.returncode != 0 and packets is None) or not streams_trusted:
        raise VideoRefused(
            f"The video stream cannot be read ({_ffmpeg_reason(result.stderr)}).", code="video_unreadable"
        )
    frame_count = _checked_frame_count(packets=packets, measured_frames=measured_frames, limits=limits)
    fps = video["fps"]
    if duration is None or duration <= 0:
        duration = frame_count / fps if fps else None
        _refuse_if_too_long(duration, limits=limits)
    if not fps and duration:
        fps = frame_count / duration
    return {
        "container": header["container"],
        "codec": video["codec"],
        "width": video["width"],
        "height": video["height"],
        "fps": round(float(fps), 6) if fps else None,
        "duration_seconds": round(float(duration), 6) if duration is not None else None,
        "frame_count": frame_count,
        "has_audio": header["has_audio"],
        "pix_fmt": video["pix_fmt"],
        "bytes": size,
        "start_seconds": header["start_seconds"],
    }


def _run_probe(*, source: Path, limits: VideoLimits, cancel: threading.Event | None) -> FFmpegResult:
    """Stream-copy the first video stream to the null muxer: the header dump plus real counts."""
    try:
        return run_ffmpeg(
            # 0:V = video that is not cover art. Measured counts go to stdout (-progress).
            [
                "-v",
                "verbose",
                "-progress",
                "pipe:1",
                *hardened_input_args(path=source, limits=limits),
                "-map",
                "0:V:0?",
                *NO_METADATA_ARGS,
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ],
            timeout=limits.timeout_seconds,
            check=False,
            cancel=cancel,
        )
    except FFmpegTimeout:
        raise VideoRefused(
            f"Reading the video took longer than {limits.timeout_seconds:g} s; it is refused.",
            code="video_timeout",
        ) from None


def _video_stream_or_refuse(
    *, header: dict[str, Any] | None, stderr: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the header, its video stream), or VideoRefused when there is no header or no video."""
    if header is None:
        raise VideoRefused(
            f"The file is not a video FFmpeg can read in an allowed format ({_ffmpeg_reason(stderr)}).",
            code="video_unreadable",
        )
    video = header["video"]
    if video is None:
        what = "audio only" if header["has_audio"] else "no streams FFmpeg can use"
        raise VideoRefused(f"The file has no video stream ({what}).", code="video_no_stream")
    return header, video


def _measured_duration(*, header: dict[str, Any], measured_seconds: float | None) -> float | None:
    """The duration to enforce: the header's, unless what was really read says otherwise."""
    duration = header["duration_seconds"]
    start = float(header["start_seconds"] or 0.0)
    if (
        duration is not None
        and measured_seconds is not None
        and start > 0
        and duration > measured_seconds
        and abs(duration - start - measured_seconds) <= max(1.0, 0.05 * measured_seconds)
    ):
        # The header counted from time 0, not from the first frame (FFmpeg's Matroska muxer
        # does, for a stream starting at 1234.6 s): what is read is what will be decoded.
        duration = measured_seconds
    if measured_seconds is not None and (duration is None or measured_seconds > duration):
        duration = measured_seconds  # a header (or forged tag) may not claim less than was read
    return duration


def _refuse_if_too_long(duration: float | None, *, limits: VideoLimits) -> None:
    if duration is not None and duration > limits.max_seconds:
        raise VideoRefused(
            f"The video lasts {duration:.1f} s; the limit is {limits.max_seconds:g} s.", code="video_too_long"
        )


def _check_frame_size(*, video: dict[str, Any], stderr: str, limits: VideoLimits) -> None:
    if video["width"] is None or video["height"] is None:
        declared = _INVALID_SIZE_RE.search(stderr)
        detail = f" (it declares {declared['w']}x{declared['h']})" if declared else ""
        raise VideoRefused(
            f"The video's frame size cannot be decoded safely{detail}; at most "
            f"{limits.max_pixels} pixels per frame are allowed.",
            code="video_too_large",
        )
    pixels = video["width"] * video["height"]
    if pixels > limits.max_pixels or video["width"] <= 0 or video["height"] <= 0:
        raise VideoRefused(
            f"The video is {video['width']}x{video['height']} ({pixels} pixels per frame); "
            f"the limit is {limits.max_pixels} pixels.",
            code="video_too_large",
        )


def _checked_frame_count(
    *, packets: re.Match[str] | None, measured_frames: int | None, limits: VideoLimits
) -> int:
    frame_count = max(int(packets["packets"]) if packets else 0, measured_frames or 0)
    if frame_count == 0:
        raise VideoRefused("The video has zero frames (it may be truncated).", code="video_no_frames")
    if frame_count > limits.max_frames:
        raise VideoRefused(
            f"The video has {frame_count} frames; the limit is {limits.max_frames}.",
            code="video_too_many_frames",
        )
    return frame_count


# ---------------------------------------------------------------------------------------------
# Decode
# ---------------------------------------------------------------------------------------------
@dataclass
class DecodedFrames:
    """Frames FFmpeg decoded: `frames` uint8 (N, H, W, 3); `pts_seconds` per returned frame
    (container time, not shifted to start at 0); `decoded_count` how many frames the decoder
    produced in total (every frame, selected or not); `output_size` (W, H)."""

    frames: np.ndarray
    pts_seconds: list[float | None]
    decoded_count: int | None
    output_size: tuple[int, int]


def select_filter(indices: list[int] | None) -> str | None:
    """An FFmpeg `select` expression keeping exactly these 0-based decoded-frame numbers."""
    if indices is None:
        return None
    if not indices:
        raise ValueError("select at least one frame")
    terms = "+".join(f"eq(n,{int(index)})" for index in sorted(set(indices)))
    return f"select='{terms}'"


def decode_frames(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    select: list[int] | None = None,
    filters: list[str] | None = None,
    limits: VideoLimits = VideoLimits(),
    source_size: tuple[int, int] | None = None,
    cancel: threading.Event | None = None,
) -> DecodedFrames:
    """Decode the first video stream with ONE FFmpeg process into a (N, H, W, 3) uint8 array.

    `select` keeps only those 0-based decoded-frame numbers (FFmpeg's `select` filter counts
    the real decoded frames, before any frame-rate conversion; `-fps_mode passthrough` makes
    sure no frame is duplicated or dropped afterwards, which AVI otherwise gets). `filters`
    are more FFmpeg filters applied after selection (for resizing); `size` (W, H) stretches to
    that size. With neither, frames keep the source size (`source_size`, probed if None).
    """
    chain = _decode_filter_chain(select=select, filters=filters, size=size)
    if size is None:
        if source_size is None:
            probed = probe_video(path, limits=limits, cancel=cancel)
            source_size = (probed["width"], probed["height"])
        size = source_size
    width, height = int(size[0]), int(size[1])
    result = _run_decode(path=path, chain=chain, limits=limits, cancel=cancel)
    frame_bytes = width * height * 3
    count = len(result.stdout) // frame_bytes
    frames = np.frombuffer(result.stdout, dtype=np.uint8, count=count * frame_bytes).reshape(
        count, height, width, 3
    )
    # Only after the real "Stream mapping:" line: a forged showinfo line in the file's tags
    # would otherwise shift every timestamp. Each n is kept once (its last line).
    after_dump = after_input_dump(result.stderr)
    by_number: dict[int, float | None] = {}
    for match in SHOWINFO_RE.finditer(after_dump):
        by_number[int(match["n"])] = None if match["pts"] == "NOPTS" else float(match["t"])
    decoded = last_match(_FRAMES_DECODED_RE, after_dump)
    return DecodedFrames(
        frames=frames,
        pts_seconds=[by_number.get(n) for n in range(count)],
        decoded_count=int(decoded["frames"]) if decoded else None,
        output_size=(width, height),
    )


def _decode_filter_chain(
    *, select: list[int] | None, filters: list[str] | None, size: tuple[int, int] | None
) -> list[str]:
    chain: list[str] = []
    selected = select_filter(select)
    if selected:
        chain.append(selected)
    chain.append("showinfo")  # one line per selected frame with its pts, n counting from 0
    if filters:
        chain.extend(filters)
        if size is None:
            raise ValueError("give the output size when passing filters")
    elif size is not None:
        chain.append(f"scale={int(size[0])}:{int(size[1])}:flags=area")
    return chain


def _run_decode(
    *, path: str | os.PathLike[str], chain: list[str], limits: VideoLimits, cancel: threading.Event | None
) -> FFmpegResult:
    try:
        return run_ffmpeg(
            # Two decoder threads (this is a 2-core target) and one filter thread: the filters
            # only see the selected frames, and extra threads cost more hand-offs than they
            # save (measured: 339 vs 365 ms for 150 frames of 720p, 95 vs 135 ms for 300 of 320x240).
            # -copyts: showinfo reports container time (FFmpeg otherwise shifts it by the start
            # time, which made MPEG-TS timestamps negative once the caller subtracted it too).
            [
                "-v",
                "verbose",
                "-copyts",
                "-threads",
                "2",
                "-filter_threads",
                "1",
                *hardened_input_args(path=path, limits=limits),
                "-map",
                "0:V:0",
                "-an",
                "-sn",
                "-dn",
                *NO_METADATA_ARGS,
                "-vf",
                ",".join(chain),
                "-fps_mode",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "pipe:1",
            ],
            timeout=limits.processing_timeout_seconds,
            check=True,
            cancel=cancel,
        )
    except FFmpegCancelled:
        raise
    except FFmpegTimeout:
        raise VideoRefused(
            f"Decoding the video took longer than {limits.processing_timeout_seconds:g} s.",
            code="video_timeout",
        ) from None
    except FFmpegError as exc:
        raise VideoRefused(
            f"The video cannot be decoded ({_ffmpeg_reason(exc.stderr)}).", code="video_undecodable"
        ) from None


# ---------------------------------------------------------------------------------------------
# Transcode for the browser
# ---------------------------------------------------------------------------------------------
def _rendition_size(*, width: int, height: int, max_height: int) -> tuple[int, int]:
    """Keep the aspect ratio, at most `max_height` tall, both sides even (yuv420p)."""
    scaled_width: float = width
    if height > max_height:
        scaled_width, height = width * max_height / height, max_height
    even = lambda value: max(2, int(round(value / 2.0)) * 2)  # noqa: E731
    return even(scaled_width), even(height)


def transcode_for_browser(
    path: str | os.PathLike[str],
    *,
    out_mp4: str | os.PathLike[str],
    poster_jpg: str | os.PathLike[str],
    limits: VideoLimits = VideoLimits(),
    max_height: int = 720,
) -> dict[str, Any]:
    """Write an H.264/yuv420p MP4 with +faststart and a JPEG poster (a frame at about one
    second, or the middle of a shorter video). Both are written under temporary names and
    renamed into place, so a reader never sees half a file. Returns the probe fields plus
    `rendition`, `poster`, `rendition_width`, `rendition_height`."""
    info = probe_video(path, limits=limits)
    width, height = _rendition_size(width=info["width"], height=info["height"], max_height=max_height)
    target, poster = Path(out_mp4), Path(poster_jpg)
    target.parent.mkdir(parents=True, exist_ok=True)
    poster.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    partial_mp4 = target.with_name(f".{target.name}.{token}.partial.mp4")
    partial_jpg = poster.with_name(f".{poster.name}.{token}.partial.jpg")
    duration = info["duration_seconds"] or 0.0
    poster_at = min(1.0, duration / 2.0) if duration else 0.0
    scale = f"scale={width}:{height}:flags=bicubic,setsar=1"
    try:
        run_ffmpeg(
            _transcode_args(path=path, limits=limits, scale=scale, output=partial_mp4),
            timeout=limits.processing_timeout_seconds,
        )
        _write_poster(rendition=partial_mp4, poster=partial_jpg, at_seconds=poster_at, limits=limits)
        os.replace(partial_mp4, target)
        os.replace(partial_jpg, poster)
    except FFmpegTimeout:
        raise VideoRefused(
            f"Converting the video took longer than {limits.processing_timeout_seconds:g} s.",
            code="video_timeout",
        ) from None
    except FFmpegError as exc:
        raise VideoRefused(
            f"The video cannot be converted ({_ffmpeg_reason(exc.stderr)}).", code="video_undecodable"
        ) from None
    finally:
        for leftover in (partial_mp4, partial_jpg):
            if leftover.exists():
                leftover.unlink()
    return {
        **info,
        "rendition": str(target),
        "poster": str(poster),
        "rendition_width": width,
        "rendition_height": height,
    }


def _transcode_args(
    *, path: str | os.PathLike[str], limits: VideoLimits, scale: str, output: Path
) -> list[str]:
    """FFmpeg arguments turning the untrusted `path` into the browser's H.264/AAC MP4 at `output`.

    At most two decoder and two encoder threads and one filter thread (a 2-core target): one
    upload must not take every core of the machine."""
    return [
        "-v",
        "error",
        "-threads",
        "2",
        "-filter_threads",
        "1",
        *hardened_input_args(path=path, limits=limits),
        "-map",
        "0:V:0",
        "-map",
        "0:a:0?",
        "-vf",
        scale,
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-threads",
        "2",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-profile:v",
        "high",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ac",
        "2",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        "-y",
        str(output),
    ]


def _write_poster(*, rendition: Path, poster: Path, at_seconds: float, limits: VideoLimits) -> None:
    """A JPEG of the frame at `at_seconds` (else the first) of the rendition just made: a
    known-good H.264 MP4, so it is no untrusted input."""
    poster_args = [
        "-v",
        "error",
        "-threads",
        "2",
        "-protocol_whitelist",
        "file",
        "-ss",
        f"{at_seconds:.3f}",
        "-i",
        "file:" + str(rendition.resolve()),
        "-map",
        "0:v:0",
        "-frames:v",
        "1",
        "-q:v",
        "3",
        "-update",
        "1",
        "-f",
        "image2",
        "-y",
        str(poster),
    ]
    run_ffmpeg(poster_args, timeout=limits.timeout_seconds)
    if not poster.exists() or poster.stat().st_size == 0:
        poster_args[poster_args.index("-ss") + 1] = "0"
        run_ffmpeg(poster_args, timeout=limits.timeout_seconds)
    if not poster.exists() or poster.stat().st_size == 0:
        raise VideoRefused(
            "The video was converted, but not even its first frame could be saved as a poster "
            "image; the video may be damaged.",
            code="video_no_poster",
        )
