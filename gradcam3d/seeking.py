"""Decoding only what the model needs from a long video: seek to the keyframe before each
selected frame and decode from there, instead of decoding every frame.

A model sees T frames (16 for C3D). In a 5-minute video that is 16 of 9,000 frames; decoding
all of them (what the original tool did, and what `gradcam3d.video.decode_frames` does) costs
seconds, decoding from the keyframe before each selected frame costs a fraction of that.
The result must be exactly the frames a straight decode selects, so:

1. `packet_index` lists every packet of the first video stream (stream copy to FFmpeg's
   `framecrc` muxer: no decoding) with its presentation timestamp and keyframe flag. The
   n-th decoded frame is the packet with the n-th smallest timestamp; the index is refused
   (None) unless it has exactly the probe's frame count and no missing or repeated timestamp.
2. `plan_seeks` groups the selected frames by the keyframe before them and estimates the
   frames to decode; seeking is used only when that is well under a straight decode.
3. `decode_by_seeking` runs an FFmpeg process (two at once for many groups) with one input per group (`-ss` to the
   keyframe, `-t` just past the group's last frame, the same hardened input options as every
   other run), keeps each group's frames by their exact timestamps (`select`), resizes them
   with the caller's filters and concatenates them in order.
4. The run is verified: exactly the expected frames, each timestamp exactly once. Anything
   else returns None and the caller decodes straight through, so seeking can only make
   preprocessing faster, never different.

Seeking trusts the container's keyframe flags to mark random-access points, so it is only
used for containers with a sample index (MP4/MOV, Matroska/WebM) and codecs whose keyframes
are random-access points.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gradcam3d.ffmpeg import FFmpegError, run_ffmpeg
from gradcam3d.video import (
    _NO_METADATA_ARGS,
    _SHOWINFO_RE,
    DecodedFrames,
    VideoLimits,
    _after_input_dump,
    hardened_input_args,
)

SEEKABLE_CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm"})
SEEKABLE_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg"})
# Below this many frames a straight decode is cheap enough that the extra index pass (one
# more FFmpeg run) is not worth it.
MIN_FRAMES_FOR_SEEKING = 300
# Seek only when the plan decodes at most this share of the frames a straight decode would.
MAX_DECODED_SHARE = 0.5
# Per group: decoder start-up and reordering, counted as frames in the estimate.
SEGMENT_OVERHEAD_FRAMES = 8
# Each input reads this far past its group's last frame (B-frame reordering needs a few
# packets more); too little only costs a fallback, never a wrong frame.
READ_MARGIN_SECONDS = 0.3
MAX_SEGMENTS = 64  # one FFmpeg input each
# Files at least this big are indexed while they are probed (both only demux, on two cores); the
# index is dropped if seeking turns out not to apply. Smaller files are never indexed.
SPECULATIVE_INDEX_BYTES = 4 * 1024 * 1024
PROCESSES = 2  # FFmpeg processes sharing the groups (a 2-core target)

_TIME_BASE_RE = re.compile(r"^#tb 0: (?P<num>\d+)/(?P<den>\d+)$", re.MULTILINE)
# framecrc packet lines: "stream, dts, pts, duration, size, 0xcrc[, F=0xflags][, S=...]";
# F is printed only when the flags are not exactly "keyframe".
_PACKET_RE = re.compile(
    r"^0,\s*(?P<dts>-?\d+),\s*(?P<pts>-?\d+),\s*(?P<duration>-?\d+),\s*(?P<size>\d+),\s*0x[0-9a-fA-F]+(?P<rest>.*)$",
    re.MULTILINE,
)
_FLAGS_RE = re.compile(r",\s*F=0x(?P<flags>[0-9A-Fa-f]+)")
_NOPTS = -(2**63)


@dataclass(frozen=True)
class PacketIndex:
    """`pts` of every packet in presentation order (ascending) in units of `time_base`;
    `keyframe_positions` the positions in `pts` of the keyframes, ascending."""

    time_base: Fraction
    pts: list[int]
    keyframe_positions: list[int]


@dataclass(frozen=True)
class SeekSegment:
    key_pts: int
    target_pts: list[int]  # ascending


@dataclass(frozen=True)
class SeekPlan:
    segments: list[SeekSegment]
    estimated_frames: int  # to decode, including per-segment overhead
    straight_frames: int  # a straight decode decodes every frame


def seeking_applies(info: dict[str, Any]) -> bool:
    """Whether the probed video may be decoded by seeking at all."""
    containers = set(str(info.get("container") or "").split(","))
    return (
        int(info.get("frame_count") or 0) >= MIN_FRAMES_FOR_SEEKING
        and bool(containers & SEEKABLE_CONTAINERS)
        and str(info.get("codec") or "") in SEEKABLE_CODECS
    )


@dataclass(frozen=True)
class RawPacketIndex:
    """What the framecrc pass read, before it is checked against the probe."""

    time_base: Fraction
    packets: list[tuple[int, bool]]  # (pts, keyframe) in file order


def read_packet_index(path: str | Path, *, limits: VideoLimits = VideoLimits()) -> RawPacketIndex | None:
    """Every packet's timestamp and keyframe flag (stream copy to `framecrc`: demuxing only,
    as the probe does, with the same hardened input options); None when unreadable."""
    try:
        result = run_ffmpeg(
            ["-v", "error", "-copyts", *hardened_input_args(path=path, limits=limits), "-map", "0:V:0",
             *_NO_METADATA_ARGS, "-c", "copy", "-f", "framecrc", "pipe:1"],
            timeout=limits.timeout_seconds,
            check=True,
        )
    except FFmpegError:
        return None
    text = result.stdout.decode("ascii", "replace")
    time_base = _TIME_BASE_RE.search(text)
    if time_base is None or int(time_base["num"]) == 0 or int(time_base["den"]) == 0:
        return None
    packets: list[tuple[int, bool]] = []
    for match in _PACKET_RE.finditer(text):
        flags = _FLAGS_RE.search(match["rest"])
        packets.append((int(match["pts"]), (int(flags["flags"], 16) & 1) == 1 if flags else True))
    return RawPacketIndex(time_base=Fraction(int(time_base["num"]), int(time_base["den"])), packets=packets)


def checked_packet_index(raw: RawPacketIndex | None, *, frame_count: int) -> PacketIndex | None:
    """The index, or None when its packets cannot be trusted to stand for the decoded frames:
    a count other than the probe's, a missing or repeated timestamp, no keyframe."""
    if raw is None:
        return None
    packets = raw.packets
    if len(packets) != frame_count or any(pts == _NOPTS for pts, _ in packets):
        return None
    if len({pts for pts, _ in packets}) != len(packets):
        return None
    packets = sorted(packets)
    keyframes = [position for position, (_, key) in enumerate(packets) if key]
    if not keyframes:
        return None
    return PacketIndex(time_base=raw.time_base, pts=[pts for pts, _ in packets], keyframe_positions=keyframes)


def packet_index(path: str | Path, *, frame_count: int, limits: VideoLimits = VideoLimits()) -> PacketIndex | None:
    """`read_packet_index` checked against the probe's `frame_count`."""
    return checked_packet_index(read_packet_index(path, limits=limits), frame_count=frame_count)


def plan_seeks(index: PacketIndex, *, positions: Sequence[int]) -> SeekPlan | None:
    """Group the selected frame positions by the keyframe before them; None when seeking would
    not decode clearly fewer frames than a straight decode."""
    if not positions:
        return None
    keys = np.asarray(index.keyframe_positions)
    groups: dict[int, list[int]] = {}
    for position in sorted(set(int(p) for p in positions)):
        if not 0 <= position < len(index.pts):
            return None
        before = int(np.searchsorted(keys, position, side="right")) - 1
        if before < 0:  # a frame before the first keyframe cannot be reached by seeking
            return None
        groups.setdefault(int(keys[before]), []).append(position)
    if len(groups) > MAX_SEGMENTS:
        return None
    estimated = sum(max(members) - key + 1 + SEGMENT_OVERHEAD_FRAMES for key, members in groups.items())
    straight = len(index.pts)
    if estimated > MAX_DECODED_SHARE * straight:
        return None
    return SeekPlan(
        segments=[
            SeekSegment(key_pts=index.pts[key], target_pts=[index.pts[p] for p in members])
            for key, members in sorted(groups.items())
        ],
        estimated_frames=estimated,
        straight_frames=straight,
    )


def decode_by_seeking(
    path: str | Path,
    *,
    plan: SeekPlan,
    time_base: Fraction,
    start_seconds: float,
    size: tuple[int, int],
    filters: list[str],
    limits: VideoLimits = VideoLimits(),
) -> DecodedFrames | None:
    """The planned frames, resized by `filters` to `size` (W, H), in presentation order; None
    when FFmpeg did not deliver exactly them (the caller then decodes straight through).

    The groups are split between PROCESSES FFmpeg processes run at once: each input costs
    FFmpeg a few milliseconds of set-up on one core, which was most of the time here."""
    segments = plan.segments
    chunks = [segments] if len(segments) < 2 * PROCESSES else [
        segments[len(segments) * part // PROCESSES: len(segments) * (part + 1) // PROCESSES] for part in range(PROCESSES)
    ]
    decode = partial(_decode_segments, path=path, time_base=time_base, start_seconds=start_seconds, size=size,
                     filters=filters, limits=limits)
    if len(chunks) == 1:
        results = [decode(chunks[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(chunks), thread_name_prefix="gradcam3d-seek") as pool:
            results = list(pool.map(decode, chunks))
    if any(result is None for result in results):
        return None
    frames = np.concatenate([result[0] for result in results if result is not None])
    times = [time for result in results if result is not None for time in result[1]]
    return DecodedFrames(frames=frames, pts_seconds=times, decoded_count=None, output_size=(int(size[0]), int(size[1])))


def _decode_segments(
    segments: list[SeekSegment],
    *,
    path: str | Path,
    time_base: Fraction,
    start_seconds: float,
    size: tuple[int, int],
    filters: list[str],
    limits: VideoLimits,
) -> tuple[np.ndarray, list[float]] | None:
    """ONE FFmpeg process, one input per group; (frames, their times in seconds) or None."""
    expected = [pts for segment in segments for pts in segment.target_pts]
    args: list[str] = ["-v", "info", "-copyts"]
    chains: list[str] = []
    for number, segment in enumerate(segments):
        key_seconds = float(segment.key_pts * time_base)
        # Without -seek_timestamp, -ss counts from the file's start time; rounding down can
        # only land on an earlier keyframe (more decoding, same frames).
        seek_to = max(0.0, key_seconds - float(start_seconds))
        # With -copyts, FFmpeg ends an input once a packet's raw timestamp passes -ss + -t,
        # and -ss does not include the start time: add it back (measured on Matroska
        # starting at 2.5 s; for files starting at 0 it changes nothing).
        read_for = (float((segment.target_pts[-1] - segment.key_pts) * time_base) + READ_MARGIN_SECONDS
                    + max(0.0, float(start_seconds)))
        args += ["-threads", "1", "-noaccurate_seek", "-ss", f"{seek_to:.6f}", "-t", f"{read_for:.6f}",
                 *hardened_input_args(path=path, limits=limits)]
        keep = "+".join(f"eq(pts,{pts})" for pts in segment.target_pts)
        chains.append(f"[{number}:V:0]select='{keep}',showinfo,{','.join(filters)}[s{number}]")
    labels = "".join(f"[s{number}]" for number in range(len(segments)))
    graph = ";".join(chains) + f";{labels}concat=n={len(segments)}:v=1:a=0[out]"
    args += ["-filter_threads", "1", "-filter_complex", graph, "-map", "[out]", "-an", "-sn", "-dn",
             *_NO_METADATA_ARGS, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    try:
        result = run_ffmpeg(args, timeout=limits.processing_timeout_seconds, check=True)
    except FFmpegError:  # also a timeout: the straight decode then gets its own chance
        return None
    width, height = int(size[0]), int(size[1])
    frame_bytes = width * height * 3
    if len(result.stdout) != frame_bytes * len(expected):
        return None
    seen: dict[int, list[str]] = {}
    for match in _SHOWINFO_RE.finditer(_after_input_dump(result.stderr)):
        if match["pts"] != "NOPTS":
            seen.setdefault(int(match["pts"]), []).append(match["t"])
    if sorted(seen) != sorted(expected) or any(len(times) != 1 for times in seen.values()):
        return None
    frames = np.frombuffer(result.stdout, dtype=np.uint8).reshape(len(expected), height, width, 3)
    return frames, [float(seen[pts][0]) for pts in expected]
