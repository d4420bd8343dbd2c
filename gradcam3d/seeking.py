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
   else returns None and the caller decodes straight through.

What this trusts: the container's keyframe flags (sync samples) mark points the decoder can
start from. It is only used for containers with a sample index (MP4/MOV, Matroska/WebM) and
codecs whose keyframes are such points; H.264/HEVC decoders also withhold frames until they
have a clean start, and VP8/VP9/AV1 refuse to start on an inter frame, so a file whose flags
lie mostly ends in the fallback. Packets marked "decode, do not show" (edit lists, files cut
without re-encoding) refuse the index, since they are packets without frames. Pinned by
tests/engine/test_seeking.py: byte-identical clips to the straight decode for H.264 MP4 and
Matroska (B-frames, start 0 and 30 s) and VP8 WebM.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Any

import numpy as np

from gradcam3d.ffmpeg import (
    NO_METADATA_ARGS,
    SHOWINFO_RE,
    FFmpegCancelled,
    FFmpegError,
    VideoLimits,
    after_input_dump,
    hardened_input_args,
    run_ffmpeg,
)
from gradcam3d.video import DecodedFrames

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
# Inputs per FFmpeg process: all its decoders are open at once, each with up to 16 reference
# frames (yuv420p: 1.5 bytes a pixel), so 4K sources get few inputs per process.
MAX_INPUTS_PER_PROCESS = 16
DECODER_MEMORY_BYTES = 512 * 1024 * 1024
_BYTES_PER_PIXEL_OF_DECODER = 24

_TIME_BASE_RE = re.compile(r"^#tb 0: (?P<num>\d+)/(?P<den>\d+)$", re.MULTILINE)
# framecrc packet lines: "stream, dts, pts, duration, size, 0xcrc[, F=0xflags][, S=...]";
# F is printed only when the flags are not exactly "keyframe".
_PACKET_RE = re.compile(
    r"^0,\s*(?P<dts>-?\d+),\s*(?P<pts>-?\d+),\s*(?P<duration>-?\d+),\s*(?P<size>\d+),\s*0x[0-9a-fA-F]+(?P<rest>.*)$",
    re.MULTILINE,
)
_FLAGS_RE = re.compile(r",\s*F=0x(?P<flags>[0-9A-Fa-f]+)")
_NOPTS = -(2**63)
_FLAG_KEY, _FLAG_DISCARD = 0x1, 0x4  # AV_PKT_FLAG_KEY, AV_PKT_FLAG_DISCARD
# FFmpeg seeks 3/23 s before -ss in containers that seek by decoding time (Matroska, not MP4)
# when the stream has B-frames (fftools/ffmpeg_demux.c), so it can land one keyframe early.
_DTS_SEEK_HEURISTIC = Fraction(3, 23)


@dataclass(frozen=True)
class PacketIndex:
    """`pts` of every packet in presentation order (ascending) in units of `time_base`;
    `keyframe_positions` the positions in `pts` of the keyframes, ascending (the first is 0)."""

    time_base: Fraction
    pts: list[int]
    keyframe_positions: list[int]
    # Decoding timestamps in the same (presentation) order; `dts_to_pts_offset` is pts - dts of
    # the first packet in file order, the constant shift MP4 seeking applies to decoding times.
    dts: list[int] = field(default_factory=list)
    dts_to_pts_offset: int = 0
    reordered: bool = False  # B-frames: packets are not in presentation order


@dataclass(frozen=True)
class SeekSegment:
    """One FFmpeg input: seek to `seek_pts` (on the container's seek time scale, just after
    the keyframe `key_pts` and before the next one), where FFmpeg lands on `key_pts` or, at
    worst, on `landing_pts`; decode until just past the last of `target_pts`."""

    key_pts: int
    target_pts: list[int]  # ascending
    seek_pts: int
    landing_pts: int


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


def container_seeks_by_pts(info: dict[str, Any]) -> bool:
    """MP4/MOV seek by presentation time; Matroska/WebM by decoding time (FFmpeg's view)."""
    return "mov" in str(info.get("container") or "").split(",")


@dataclass(frozen=True)
class RawPacketIndex:
    """What the framecrc pass read, before it is checked against the probe."""

    time_base: Fraction
    packets: list[tuple[int, int, int]]  # (pts, dts, AV_PKT_FLAG_* bits) in file order


def read_packet_index(
    path: str | os.PathLike[str],
    *,
    limits: VideoLimits = VideoLimits(),
    cancel: threading.Event | None = None,
) -> RawPacketIndex | None:
    """Every packet's timestamp and flags (stream copy to `framecrc`: demuxing only, as the
    probe does, with the same hardened input options, and never more packets than the frame
    limit allows); None when unreadable."""
    try:
        result = run_ffmpeg(
            [
                "-v",
                "error",
                "-copyts",
                *hardened_input_args(path=path, limits=limits),
                "-map",
                "0:V:0",
                *NO_METADATA_ARGS,
                "-c",
                "copy",
                "-frames:v",
                str(int(limits.max_frames) + 1),
                "-f",
                "framecrc",
                "pipe:1",
            ],
            timeout=limits.timeout_seconds,
            check=True,
            cancel=cancel,
        )
    except FFmpegCancelled:
        raise
    except FFmpegError:
        return None
    text = result.stdout.decode("ascii", "replace")
    time_base = _TIME_BASE_RE.search(text)
    if time_base is None or int(time_base["num"]) == 0 or int(time_base["den"]) == 0:
        return None
    packets: list[tuple[int, int, int]] = []
    for match in _PACKET_RE.finditer(text):
        flags = _FLAGS_RE.search(match["rest"])
        packets.append(
            (int(match["pts"]), int(match["dts"]), int(flags["flags"], 16) if flags else _FLAG_KEY)
        )
    return RawPacketIndex(time_base=Fraction(int(time_base["num"]), int(time_base["den"])), packets=packets)


def checked_packet_index(raw: RawPacketIndex | None, *, frame_count: int) -> PacketIndex | None:
    """The index, or None when its packets cannot be trusted to stand for the decoded frames:
    a count other than the probe's, a missing or repeated timestamp, a first-shown packet that
    is not a keyframe (a leading frame the decoder cannot decode, as in a Matroska file cut
    inside an open GOP: the decoder yields one frame fewer), or a packet the demuxer marks to
    be decoded but not shown (an MP4 edit list, as in a file cut without re-encoding)."""
    if raw is None:
        return None
    packets = raw.packets
    if len(packets) != frame_count or any(
        pts == _NOPTS or dts == _NOPTS or flags & _FLAG_DISCARD for pts, dts, flags in packets
    ):
        return None
    if len({pts for pts, _, _ in packets}) != len(packets):
        return None
    file_order_pts = [pts for pts, _, _ in packets]
    reordered = any(later < earlier for earlier, later in zip(file_order_pts, file_order_pts[1:]))
    first_pts, first_dts, _ = packets[0]
    packets = sorted(packets)
    keyframes = [position for position, (_, _, flags) in enumerate(packets) if flags & _FLAG_KEY]
    if not keyframes or keyframes[0] != 0:
        return None
    return PacketIndex(
        time_base=raw.time_base,
        pts=[pts for pts, _, _ in packets],
        keyframe_positions=keyframes,
        dts=[dts for _, dts, _ in packets],
        dts_to_pts_offset=first_pts - first_dts,
        reordered=reordered,
    )


def packet_index(
    path: str | os.PathLike[str], *, frame_count: int, limits: VideoLimits = VideoLimits()
) -> PacketIndex | None:
    """`read_packet_index` checked against the probe's `frame_count`."""
    return checked_packet_index(read_packet_index(path, limits=limits), frame_count=frame_count)


def plan_seeks(index: PacketIndex, *, positions: Sequence[int], seeks_by_pts: bool) -> SeekPlan | None:
    """Group the selected frame positions by the keyframe before them; None when seeking would
    not decode clearly fewer frames than a straight decode.

    `seeks_by_pts`: the container seeks by presentation time (MP4/MOV). Otherwise FFmpeg may
    seek 3/23 s earlier than asked, so each input asks for a point just after its keyframe
    and is sized from the earliest keyframe it can land on."""
    if not positions:
        return None
    keys = np.asarray(index.keyframe_positions)
    groups: dict[int, list[int]] = {}
    for position in sorted({int(p) for p in positions}):
        if not 0 <= position < len(index.pts):
            return None
        before = int(np.searchsorted(keys, position, side="right")) - 1
        if before < 0:  # a frame before the first keyframe cannot be reached by seeking
            return None
        groups.setdefault(before, []).append(position)
    if len(groups) > MAX_SEGMENTS:
        return None
    heuristic = 0 if seeks_by_pts else math.ceil(_DTS_SEEK_HEURISTIC / index.time_base)
    # At least a millisecond past the keyframe: -ss is written with microseconds.
    past_key = max(1, math.ceil(Fraction(1, 1000) / index.time_base))
    # Where each keyframe sits on the time scale the container seeks by: MP4 compares -ss with
    # decoding times shifted by one constant (measured: with jittery B-frame timestamps, asking
    # for a keyframe's pts landed one keyframe early in 4 of 10 cases, its shifted dts in none).
    if seeks_by_pts and index.dts:
        key_times = [index.dts[p] + index.dts_to_pts_offset for p in index.keyframe_positions]
    else:
        key_times = [index.pts[p] for p in index.keyframe_positions]
    segments, estimated = [], 0
    for key_number, members in sorted(groups.items()):
        key_time = key_times[key_number]
        # Past FFmpeg's heuristic when the next keyframe leaves room, else halfway to it.
        step = heuristic + past_key
        if key_number + 1 < len(key_times):
            step = min(step, (key_times[key_number + 1] - key_time) // 2)
        seek_time = key_time + max(step, 0)
        landing_number = max(int(np.searchsorted(key_times, seek_time - heuristic, side="right")) - 1, 0)
        landing_position = int(keys[min(landing_number, key_number)])
        segments.append(
            SeekSegment(
                key_pts=index.pts[int(keys[key_number])],
                target_pts=[index.pts[p] for p in members],
                seek_pts=seek_time,
                landing_pts=index.pts[landing_position],
            )
        )
        estimated += max(members) - landing_position + 1 + SEGMENT_OVERHEAD_FRAMES
    straight = len(index.pts)
    if estimated > MAX_DECODED_SHARE * straight:
        return None
    return SeekPlan(segments=segments, estimated_frames=estimated, straight_frames=straight)


def decode_by_seeking(
    path: str | os.PathLike[str],
    *,
    plan: SeekPlan,
    time_base: Fraction,
    start_seconds: float,
    size: tuple[int, int],
    filters: list[str],
    source_pixels: int,
    limits: VideoLimits = VideoLimits(),
    cancel: threading.Event | None = None,
) -> DecodedFrames | None:
    """The planned frames, resized by `filters` to `size` (W, H), in presentation order; None
    when FFmpeg did not deliver exactly them (the caller then decodes straight through).

    The groups are split between FFmpeg processes, PROCESSES at once: each input costs FFmpeg
    a few milliseconds of set-up on one core, which was most of the time here. Every input
    holds a decoder with its reference frames, so a process gets at most as many inputs as
    DECODER_MEMORY_BYTES allows at the source frame size (`source_pixels`)."""
    segments = plan.segments
    per_process = max(
        1,
        min(
            MAX_INPUTS_PER_PROCESS,
            DECODER_MEMORY_BYTES // max(1, source_pixels * _BYTES_PER_PIXEL_OF_DECODER),
        ),
    )
    count = max(-(-len(segments) // per_process), PROCESSES if len(segments) >= 2 * PROCESSES else 1)
    chunks = [
        segments[len(segments) * part // count : len(segments) * (part + 1) // count] for part in range(count)
    ]
    decode = partial(
        _decode_segments,
        path=path,
        time_base=time_base,
        start_seconds=start_seconds,
        size=size,
        filters=filters,
        limits=limits,
        cancel=cancel,
    )
    if len(chunks) == 1:
        results = [decode(chunks[0])]
    else:
        with ThreadPoolExecutor(max_workers=PROCESSES, thread_name_prefix="gradcam3d-seek") as pool:
            results = list(pool.map(decode, chunks))
    if any(result is None for result in results):
        return None
    frames = np.concatenate([result[0] for result in results if result is not None])
    times: list[float | None] = [time for result in results if result is not None for time in result[1]]
    return DecodedFrames(
        frames=frames, pts_seconds=times, decoded_count=None, output_size=(int(size[0]), int(size[1]))
    )


def _decode_segments(
    segments: list[SeekSegment],
    *,
    path: str | os.PathLike[str],
    time_base: Fraction,
    start_seconds: float,
    size: tuple[int, int],
    filters: list[str],
    limits: VideoLimits,
    cancel: threading.Event | None,
) -> tuple[np.ndarray, list[float]] | None:
    """ONE FFmpeg process, one input per group; (frames, their times in seconds) or None."""
    expected = [pts for segment in segments for pts in segment.target_pts]
    args = _segments_args(
        segments, path=path, time_base=time_base, start_seconds=start_seconds, filters=filters, limits=limits
    )
    try:
        result = run_ffmpeg(args, timeout=limits.processing_timeout_seconds, check=True, cancel=cancel)
    except FFmpegCancelled:
        raise
    except FFmpegError:  # also a timeout: the straight decode then gets its own chance
        return None
    width, height = int(size[0]), int(size[1])
    frame_bytes = width * height * 3
    if len(result.stdout) != frame_bytes * len(expected):
        return None
    times = _times_of_exactly(expected, stderr=result.stderr)
    if times is None:
        return None
    frames = np.frombuffer(result.stdout, dtype=np.uint8).reshape(len(expected), height, width, 3)
    return frames, times


def _segments_args(
    segments: list[SeekSegment],
    *,
    path: str | os.PathLike[str],
    time_base: Fraction,
    start_seconds: float,
    filters: list[str],
    limits: VideoLimits,
) -> list[str]:
    """FFmpeg arguments: one seeking input per segment, each selecting its target frames, all
    concatenated in order into one raw RGB stream on stdout."""
    args: list[str] = ["-v", "info", "-copyts"]
    chains: list[str] = []
    for number, segment in enumerate(segments):
        # -ss counts from the file's start time (without -seek_timestamp); -t counts from the
        # keyframe FFmpeg lands on, at worst `landing_pts` (measured: Matroska with B-frames
        # lands one keyframe early when asked for the keyframe itself).
        seek_to = max(0.0, float(segment.seek_pts * time_base) - float(start_seconds))
        read_for = float((segment.target_pts[-1] - segment.landing_pts) * time_base) + READ_MARGIN_SECONDS
        args += [
            "-threads",
            "1",
            "-noaccurate_seek",
            "-ss",
            f"{seek_to:.6f}",
            "-t",
            f"{read_for:.6f}",
            *hardened_input_args(path=path, limits=limits),
        ]
        keep = "+".join(f"eq(pts,{pts})" for pts in segment.target_pts)
        chains.append(f"[{number}:V:0]select='{keep}',showinfo,{','.join(filters)}[s{number}]")
    labels = "".join(f"[s{number}]" for number in range(len(segments)))
    graph = ";".join(chains) + f";{labels}concat=n={len(segments)}:v=1:a=0[out]"
    return [
        *args,
        "-filter_threads",
        "1",
        "-filter_complex",
        graph,
        "-map",
        "[out]",
        "-an",
        "-sn",
        "-dn",
        *NO_METADATA_ARGS,
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:1",
    ]


def _times_of_exactly(expected: list[int], *, stderr: str) -> list[float] | None:
    """The time in seconds of each `expected` pts, in order, from showinfo's lines; None unless
    showinfo saw exactly those frames, each once."""
    seen: dict[int, list[str]] = {}
    for match in SHOWINFO_RE.finditer(after_input_dump(stderr)):
        if match["pts"] != "NOPTS":
            seen.setdefault(int(match["pts"]), []).append(match["t"])
    if sorted(seen) != sorted(expected) or any(len(times) != 1 for times in seen.values()):
        return None
    return [float(seen[pts][0]) for pts in expected]
