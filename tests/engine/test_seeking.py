"""Decoding a long video by seeking (gradcam3d.seeking) gives exactly the frames a straight
decode gives, or falls back to the straight decode."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest

from gradcam3d import seeking
from gradcam3d.errors import VideoRefused
from gradcam3d.ffmpeg import run_ffmpeg
from gradcam3d.preprocess import PreprocessParams, preprocess_video, resize_filters, select_source_indices
from gradcam3d.video import probe_video
from tests.engine import video_factories as vf

FRAMES = 1000  # long enough for 16 frames 25 keyframes apart to be worth seeking


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("seek")
    frames = vf.coded_frames(count=FRAMES)
    return {
        "h264_mp4": vf.make_gop_video(folder / "gop25.mp4", frames=frames),
        "vp8_webm": vf.make_gop_video(folder / "gop25.webm", frames=frames, codec="libvpx"),
        # Matroska seeks by decoding time: FFmpeg lands one keyframe early when asked for one.
        "h264_mkv": vf.make_gop_video(folder / "gop25.mkv", frames=frames),
        "h264_mkv_late_start": vf.make_gop_video(folder / "late.mkv", frames=frames, start_seconds=30.0),
        "h264_mp4_late_start": vf.make_gop_video(folder / "late.mp4", frames=frames, start_seconds=30.0),
        # Phone-like timestamps: each frame up to 4 ms early or late (30 fps, B-frames, 90 kHz); MP4
        # seeking by presentation time then landed a keyframe early.
        "h264_mp4_jitter": vf.make_gop_video(
            folder / "jitter.mp4", frames=frames, fps=30.0, jitter_seconds=0.004
        ),
        "h264_mp4_rare_keyframes": vf.make_gop_video(folder / "gop250.mp4", frames=frames, gop=250),
        "h264_mpegts_late_start": vf.make_gop_video(folder / "late.ts", frames=frames, start_seconds=1.4),
    }


def _both(path: Path, **kwargs) -> tuple:
    return preprocess_video(path, **kwargs), preprocess_video(path, seek=False, **kwargs)


@pytest.mark.parametrize(
    "kind",
    ["h264_mp4", "vp8_webm", "h264_mkv", "h264_mkv_late_start", "h264_mp4_late_start", "h264_mp4_jitter"],
)
@pytest.mark.parametrize(
    "input_shape, params",
    [
        ((16, 64, 96, 3), PreprocessParams()),  # source size: the frame codes stay readable
        (
            (8, 40, 40, 1),
            PreprocessParams(frame_stride=3, frame_offset=0, resize_mode="letterbox", scaling="symmetric"),
        ),
    ],
    ids=["original-defaults", "stride3-letterbox-gray"],
)
def test_seeking_gives_byte_identical_clips_to_a_straight_decode(
    long_videos: dict[str, Path], kind: str, input_shape: tuple[int, ...], params: PreprocessParams
) -> None:
    sought, straight = _both(long_videos[kind], input_shape=input_shape, params=params)
    assert sought.decode_strategy == "seek" and straight.decode_strategy == "sequential"
    assert sought.source_frame_indices == straight.source_frame_indices
    np.testing.assert_array_equal(sought.frames_rgb, straight.frames_rgb)
    np.testing.assert_array_equal(sought.x, straight.x)
    assert sought.timestamps == straight.timestamps
    # And they are the frames the original tool would pick, at their real times.
    expected = select_source_indices(
        frame_count=FRAMES,
        frames_needed=input_shape[0],
        stride=params.frame_stride,
        offset=params.frame_offset,
    )
    assert sought.source_frame_indices == expected
    if kind == "h264_mp4_jitter":
        times = [i / 30.0 + 0.004 * math.sin(1.7 * i) for i in expected]
    else:
        times = [i / 25.0 for i in expected]
    assert sought.timestamps == pytest.approx(times, abs=2e-3)
    if input_shape[-1] == 3 and params.resize_mode == "stretch":
        assert vf.frame_codes(sought.frames_rgb) == expected


def test_ffmpeg_log_lines_stay_whole_on_runs_longer_than_its_progress_interval() -> None:
    # FFmpeg's progress line ends in "\r"; without -nostats the next showinfo line shared its
    # line after half a second and lost its frame (seen as a missing timestamp).
    from gradcam3d.ffmpeg import SHOWINFO_RE as _SHOWINFO_RE

    result = run_ffmpeg(
        [
            "-v",
            "info",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=32x32:r=25:d=1.2",
            "-vf",
            "showinfo,realtime",
            "-f",
            "null",
            "-",
        ],
        timeout=30,
    )
    assert len(_SHOWINFO_RE.findall(result.stderr)) == 30


def test_rare_keyframes_and_short_videos_decode_straight_through(
    long_videos: dict[str, Path], tmp_path: Path
) -> None:
    # One keyframe every 250 frames: seeking would decode most of the video anyway.
    clip = preprocess_video(long_videos["h264_mp4_rare_keyframes"], input_shape=(16, 32, 48, 3))
    assert clip.decode_strategy == "sequential"
    short = vf.make_gop_video(tmp_path / "short.mp4", frames=vf.coded_frames(count=120), gop=10)
    assert preprocess_video(short, input_shape=(16, 32, 48, 3)).decode_strategy == "sequential"
    # MPEG-TS has no sample index to seek by.
    assert (
        preprocess_video(long_videos["h264_mpegts_late_start"], input_shape=(16, 32, 48, 3)).decode_strategy
        == "sequential"
    )


def test_mpegts_timestamps_count_from_the_start_of_the_video(long_videos: dict[str, Path]) -> None:
    # The stream starts at 1.4 s (plus the muxer's own delay): frame i is still shown at i / 25 s.
    clip = preprocess_video(long_videos["h264_mpegts_late_start"], input_shape=(16, 64, 96, 3))
    assert clip.timestamps == pytest.approx([i / 25.0 for i in clip.source_frame_indices], abs=2e-3)
    assert vf.frame_codes(clip.frames_rgb) == clip.source_frame_indices


def test_packet_index_lists_every_frame_and_its_keyframes(long_videos: dict[str, Path]) -> None:
    path = long_videos["h264_mp4"]
    index = seeking.packet_index(path, frame_count=FRAMES)
    assert index is not None and len(index.pts) == FRAMES and index.pts == sorted(index.pts)
    assert index.keyframe_positions == list(range(0, FRAMES, 25))
    # A count that disagrees with the probe's means the packets do not stand for the frames.
    assert seeking.packet_index(path, frame_count=FRAMES - 1) is None


def test_plan_groups_frames_by_the_keyframe_before_them_and_declines_when_not_cheaper() -> None:
    index = seeking.PacketIndex(
        time_base=seeking.Fraction(1, 25), pts=list(range(1000)), keyframe_positions=list(range(0, 1000, 50))
    )
    plan = seeking.plan_seeks(index, positions=[10, 20, 60, 999], seeks_by_pts=True)
    assert plan is not None
    assert [(s.key_pts, s.target_pts) for s in plan.segments] == [(0, [10, 20]), (50, [60]), (950, [999])]
    # MP4 seeks by presentation time: ask just after the keyframe, land on it.
    assert [(s.seek_pts, s.landing_pts) for s in plan.segments] == [(1, 0), (51, 50), (951, 950)]
    assert plan.estimated_frames == (21 + 8) + (11 + 8) + (50 + 8)
    assert (
        seeking.plan_seeks(index, positions=list(range(1, 1000, 2)), seeks_by_pts=True) is None
    )  # nearly every frame
    no_leading_key = seeking.PacketIndex(time_base=index.time_base, pts=index.pts, keyframe_positions=[500])
    assert seeking.plan_seeks(no_leading_key, positions=[10, 600], seeks_by_pts=True) is None


def test_an_index_whose_first_shown_frame_is_not_a_keyframe_is_refused() -> None:
    # A leading frame shown before the first keyframe (a cut inside an open GOP): the decoder
    # drops it, so packets and decoded frames no longer line up.
    raw = seeking.RawPacketIndex(
        time_base=seeking.Fraction(1, 25), packets=[(1, 0, 0x1), (0, 1, 0x0), (2, 2, 0x0), (3, 3, 0x0)]
    )
    assert seeking.checked_packet_index(raw, frame_count=4) is None
    fine = seeking.RawPacketIndex(
        time_base=raw.time_base, packets=[(0, -1, 0x1), (2, 0, 0x0), (1, 1, 0x0), (3, 2, 0x0)]
    )
    index = seeking.checked_packet_index(fine, frame_count=4)
    assert index is not None and index.pts == [0, 1, 2, 3] and index.dts == [-1, 1, 0, 2]
    assert index.dts_to_pts_offset == 1 and index.reordered


def test_plan_for_a_container_seeking_by_decoding_time_asks_past_ffmpegs_early_seek() -> None:
    # FFmpeg seeks 3/23 s (4 frames at 25 fps) early in Matroska when there are B-frames.
    index = seeking.PacketIndex(
        time_base=seeking.Fraction(1, 25), pts=list(range(1000)), keyframe_positions=[0, 50, 53, 100, 150]
    )
    plan = seeking.plan_seeks(index, positions=[51, 60, 120], seeks_by_pts=False)
    assert plan is not None
    cramped, late, roomy = plan.segments
    # Keyframes 3 frames apart leave no room past the heuristic: FFmpeg may land on frame 0.
    assert (cramped.key_pts, cramped.seek_pts, cramped.landing_pts) == (50, 51, 0)
    assert (late.key_pts, late.seek_pts, late.landing_pts) == (53, 58, 53)
    assert (roomy.key_pts, roomy.seek_pts, roomy.landing_pts) == (100, 105, 100)
    assert plan.estimated_frames == (51 - 0 + 1 + 8) + (60 - 53 + 1 + 8) + (120 - 100 + 1 + 8)


def test_a_seek_that_does_not_deliver_exactly_the_planned_frames_is_rejected(
    long_videos: dict[str, Path],
) -> None:
    path = long_videos["h264_mp4"]
    info = probe_video(path)
    index = seeking.packet_index(path, frame_count=FRAMES)
    assert index is not None
    good = seeking.plan_seeks(index, positions=[101, 203, 305], seeks_by_pts=True)
    assert good is not None
    decode = {
        "time_base": index.time_base,
        "start_seconds": info["start_seconds"],
        "size": (96, 64),
        "filters": resize_filters(mode="stretch", width=96, height=64),
        "source_pixels": 96 * 64,
    }
    decoded = seeking.decode_by_seeking(path, plan=good, **decode)
    assert decoded is not None and vf.frame_codes(decoded.frames) == [101, 203, 305]
    # A timestamp no frame has (between two frames): nothing is returned rather than a wrong frame.
    half_a_frame = (index.pts[1] - index.pts[0]) // 2
    off_by_half = dataclasses.replace(
        good,
        segments=[
            dataclasses.replace(s, target_pts=[p + half_a_frame for p in s.target_pts]) for s in good.segments
        ],
    )
    assert seeking.decode_by_seeking(path, plan=off_by_half, **decode) is None
    # Huge source frames: one input per FFmpeg process, same frames.
    one_each = seeking.decode_by_seeking(path, plan=good, **{**decode, "source_pixels": 3840 * 2160})
    assert one_each is not None and vf.frame_codes(one_each.frames) == [101, 203, 305]


def test_a_file_cut_without_reencoding_is_not_sought_because_its_packets_outnumber_its_frames(
    long_videos: dict[str, Path], tmp_path: Path
) -> None:
    # Cutting at a non-keyframe with stream copy keeps the packets from the keyframe before,
    # marked "decode, do not show" (an MP4 edit list): the index must not count them as frames.
    cut = tmp_path / "cut.mp4"
    run_ffmpeg(
        ["-v", "error", "-ss", "3.3", "-i", str(long_videos["h264_mp4"]), "-c", "copy", "-y", str(cut)],
        timeout=60,
    )
    raw = seeking.read_packet_index(cut)
    assert raw is not None and any(flags & 0x4 for _, _, flags in raw.packets)
    sought, straight = _both(cut, input_shape=(16, 64, 96, 3))
    assert (
        sought.decode_strategy == "sequential"
        and sought.source_frame_indices == straight.source_frame_indices
    )
    np.testing.assert_array_equal(sought.x, straight.x)
    # Frame n of the cut is frame n + (first shown frame) of the original, for every n.
    offsets = {
        code - index for code, index in zip(vf.frame_codes(sought.frames_rgb), sought.source_frame_indices)
    }
    assert len(offsets) == 1 and 80 <= offsets.pop() <= 85


def test_preprocessing_falls_back_to_the_straight_decode_when_seeking_does_not_verify(
    long_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = long_videos["h264_mp4"]
    monkeypatch.setattr(seeking, "decode_by_seeking", lambda *args, **kwargs: None)
    clip = preprocess_video(path, input_shape=(16, 64, 96, 3))
    assert clip.decode_strategy == "sequential (seeking did not verify)"
    assert vf.frame_codes(clip.frames_rgb) == clip.source_frame_indices


def test_a_big_file_is_indexed_while_it_is_probed_with_the_same_result(
    long_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Path] = []
    read = seeking.read_packet_index

    def counting(path, **kwargs):
        calls.append(Path(path))
        return read(path, **kwargs)

    monkeypatch.setattr(seeking, "SPECULATIVE_INDEX_BYTES", 0)
    monkeypatch.setattr(seeking, "read_packet_index", counting)
    path = long_videos["h264_mp4"]
    clip = preprocess_video(path, input_shape=(16, 64, 96, 3))
    assert clip.decode_strategy == "seek" and calls == [path]  # indexed once, during the probe
    np.testing.assert_array_equal(clip.x, preprocess_video(path, input_shape=(16, 64, 96, 3), seek=False).x)
    # A file the probe refuses is refused as before; the index run beside it changes nothing.
    text = vf.make_text_renamed_mp4(tmp_path / "list.mp4")
    with pytest.raises(VideoRefused) as refused:
        preprocess_video(text, input_shape=(16, 64, 96, 3))
    assert refused.value.code == "video_unreadable"


def test_a_refused_probe_stops_the_index_running_beside_it(
    long_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from gradcam3d import preprocess
    from gradcam3d.ffmpeg import FFmpegCancelled

    outcome: dict[str, object] = {}
    probing = threading.Event()

    def slow_index(path, *, limits, cancel):
        probing.wait(30)
        try:  # stands in for indexing a huge file: only a cancel ends it early
            run_ffmpeg(
                [
                    "-v",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=s=32x32:r=5:d=60",
                    "-vf",
                    "realtime",
                    "-f",
                    "null",
                    "-",
                ],
                timeout=120,
                cancel=cancel,
            )
        except FFmpegCancelled as exc:
            outcome["index"] = exc
            raise

    def refusing_probe(path, **kwargs):
        probing.set()
        time.sleep(0.3)
        raise VideoRefused("The video lasts 900.0 s; the limit is 600 s.", code="video_too_long")

    monkeypatch.setattr(seeking, "SPECULATIVE_INDEX_BYTES", 0)
    monkeypatch.setattr(seeking, "read_packet_index", slow_index)
    monkeypatch.setattr(preprocess, "probe_video", refusing_probe)
    with pytest.raises(VideoRefused) as refused:
        preprocess_video(long_videos["h264_mp4"], input_shape=(16, 64, 96, 3))
    assert refused.value.code == "video_too_long"
    assert isinstance(outcome.get("index"), FFmpegCancelled)
