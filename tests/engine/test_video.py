"""Probing, decoding and transcoding untrusted videos (gradcam3d.video)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gradcam3d.errors import VideoRefused
from gradcam3d.video import VideoLimits, decode_frames, probe_video, transcode_for_browser
from tests.engine import video_factories as vf

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    frames40 = vf.numbered_frames(count=40)
    made = {
        "mp4": vf.make_mp4(folder / "clip.mp4", frames=frames40),
        "avi": vf.make_avi(folder / "clip.avi", frames=frames40),
        "avi_mjpeg_vfr": vf.make_avi(folder / "vfr_mjpeg.avi", frames=frames40, codec="mjpeg", vfr=True),
        "avi_vfr": vf.make_avi(folder / "vfr.avi", frames=frames40, vfr=True),
        "webm": vf.make_webm(folder / "clip.webm", frames=frames40),
        "mkv": vf.make_mkv(folder / "clip.mkv", frames=frames40),
        "vfr_mp4": vf.make_vfr_mp4(folder / "vfr.mp4", frames=frames40),
        "text": vf.make_text_renamed_mp4(folder / "notes.mp4"),
        "audio": vf.make_audio_only(folder / "sine.m4a"),
        "zero": vf.make_zero_frame_mp4(folder / "zero.mp4", scratch=folder / "zero-src.mp4"),
        "truncated": vf.make_truncated_mp4(folder / "half.mp4", scratch=folder / "half-src.mp4"),
        "huge_gif": vf.make_huge_declared_gif(folder / "bomb.gif"),
        "png": vf.make_png_image(folder / "still.mp4"),
    }
    made["forged"] = vf.make_forged_stats_mp4(folder / "forged.mp4")
    made["hls"] = vf.make_hls_playlist(folder / "list.m3u8", target=made["mp4"])
    made["hls_renamed"] = vf.make_hls_playlist(folder / "list.mp4", target=made["mp4"])
    made["concat"] = vf.make_concat_script(folder / "concat.mp4", target=made["mp4"])
    return made


@pytest.mark.parametrize("kind", ["mp4", "avi", "avi_vfr", "avi_mjpeg_vfr", "webm", "mkv", "vfr_mp4"])
def test_probe_counts_exactly_the_frames_written_in_every_container(
    videos: dict[str, Path], kind: str
) -> None:
    info = probe_video(videos[kind])
    assert info["frame_count"] == 40
    assert (info["width"], info["height"]) == (64, 48)
    assert info["has_audio"] is False
    assert info["duration_seconds"] > 0 and info["fps"] > 0
    assert info["bytes"] == videos[kind].stat().st_size


def test_probe_reports_container_codec_and_pixel_format(videos: dict[str, Path]) -> None:
    mp4 = probe_video(videos["mp4"])
    assert mp4["container"].split(",")[0] == "mov" and mp4["codec"] == "h264" and mp4["pix_fmt"] == "yuv420p"
    assert mp4["fps"] == pytest.approx(25.0)
    assert mp4["duration_seconds"] == pytest.approx(1.6, abs=0.05)
    assert probe_video(videos["avi"])["container"] == "avi" and probe_video(videos["avi"])["codec"] == "mpeg4"
    assert probe_video(videos["webm"])["codec"] == "vp8"


def test_probe_of_variable_frame_rate_reports_real_duration(videos: dict[str, Path]) -> None:
    info = probe_video(videos["vfr_mp4"])
    # 20 frames at 25 fps then 20 frames 0.1 s apart: last frame at 0.8 + 1.9 s (the MP4
    # muxer's duration rounds the last frame's length); a constant-rate guess would say 1.6 s.
    assert 2.5 <= info["duration_seconds"] <= 2.9
    assert info["frame_count"] == 40


@pytest.mark.parametrize(
    ("kind", "code", "words"),
    [
        ("text", "video_unreadable", "not a video"),
        ("truncated", "video_unreadable", "not a video"),
        ("png", "video_unreadable", "not a video"),
        ("audio", "video_no_stream", "no video stream (audio only)"),
        ("zero", "video_no_frames", "zero frames"),
        ("huge_gif", "video_too_large", "20000x20000"),
        ("hls", "video_unreadable", "allowed format"),
        ("hls_renamed", "video_unreadable", "allowed format"),
        ("concat", "video_unreadable", "allowed format"),
    ],
)
def test_probe_refuses_bad_files_with_a_clear_message(
    videos: dict[str, Path], kind: str, code: str, words: str
) -> None:
    started = time.monotonic()
    with pytest.raises(VideoRefused) as refused:
        probe_video(videos[kind])
    assert refused.value.code == code
    assert words in str(refused.value)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("limits", "code", "words"),
    [
        (VideoLimits(max_bytes=1000), "video_too_big", "limit is 0.0 MB"),
        (VideoLimits(max_seconds=1.0), "video_too_long", "lasts 1.6 s; the limit is 1 s"),
        (VideoLimits(max_pixels=64 * 47), "video_too_large", "64x48 (3072 pixels per frame)"),
        (VideoLimits(max_frames=39), "video_too_many_frames", "40 frames; the limit is 39"),
    ],
)
def test_probe_enforces_each_limit(
    videos: dict[str, Path], limits: VideoLimits, code: str, words: str
) -> None:
    with pytest.raises(VideoRefused) as refused:
        probe_video(videos["mp4"], limits=limits)
    assert refused.value.code == code
    assert words in str(refused.value)


def test_probe_refuses_empty_files_and_fifos_without_running_ffmpeg(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoRefused, match="empty"):
        probe_video(empty)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # opening a FIFO would block forever
    started = time.monotonic()
    with pytest.raises(VideoRefused, match="not a regular file"):
        probe_video(fifo)
    assert time.monotonic() - started < 1


def test_probe_gives_up_after_its_timeout(videos: dict[str, Path]) -> None:
    started = time.monotonic()
    with pytest.raises(VideoRefused) as refused:
        probe_video(videos["webm"], limits=VideoLimits(timeout_seconds=0.001))
    assert refused.value.code == "video_timeout"
    assert time.monotonic() - started < 5


def test_filenames_that_look_like_protocols_are_read_as_plain_files(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copy(videos["mp4"], tmp_path / "a.mp4")
    shutil.copy(videos["avi"], tmp_path / "b.avi")
    tricky = tmp_path / "concat:a.mp4|b.avi"
    shutil.copy(videos["webm"], tricky)
    info = probe_video(tricky)
    assert info["codec"] == "vp8" and info["frame_count"] == 40


def test_decode_selects_real_decoded_frames_on_vfr_avi_without_duplicates(videos: dict[str, Path]) -> None:
    for kind in ("avi_vfr", "avi_mjpeg_vfr", "vfr_mp4"):
        every = decode_frames(videos[kind])
        assert every.frames.shape == (40, 48, 64, 3)
        assert vf.frame_numbers(every.frames) == list(range(40)), kind
        picked = decode_frames(videos[kind], select=[0, 21, 39], size=(32, 24))
        assert picked.frames.shape == (3, 24, 32, 3)
        assert vf.frame_numbers(picked.frames) == [0, 21, 39], kind
        assert picked.decoded_count == 40


def test_plain_ffmpeg_would_duplicate_vfr_avi_frames(videos: dict[str, Path]) -> None:
    """Why `-fps_mode passthrough` matters: the same decode without it gives extra frames."""
    from gradcam3d.ffmpeg import run_ffmpeg

    result = run_ffmpeg(
        ["-v", "error", "-i", str(videos["avi_vfr"]), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    )
    assert len(result.stdout) // (64 * 48 * 3) > 40


def _top_level_atoms(path: Path) -> list[str]:
    data, atoms, position = path.read_bytes(), [], 0
    while position + 8 <= len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        atoms.append(data[position + 4 : position + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[position + 8 : position + 16], "big")
        if size < 8:
            break
        position += size
    return atoms


def test_transcode_writes_faststart_h264_yuv420p_and_a_poster(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    out, poster = tmp_path / "r" / "video.mp4", tmp_path / "r" / "poster.jpg"
    result = transcode_for_browser(videos["avi_vfr"], out_mp4=out, poster_jpg=poster)
    assert result["rendition"] == str(out) and result["poster"] == str(poster)
    assert result["frame_count"] == 40
    rendition = probe_video(out)
    assert (rendition["codec"], rendition["pix_fmt"]) == ("h264", "yuv420p")
    assert rendition["frame_count"] == 40
    atoms = _top_level_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat")
    assert poster.read_bytes()[:3] == b"\xff\xd8\xff"
    assert sorted(p.name for p in out.parent.iterdir()) == ["poster.jpg", "video.mp4"]  # no temp files left


def test_transcode_makes_even_sizes_and_respects_max_height(tmp_path: Path) -> None:
    odd = vf.make_mkv(
        tmp_path / "odd.mkv", frames=vf.numbered_frames(count=6, width=75, height=101), lossless=True
    )
    result = transcode_for_browser(
        odd, out_mp4=tmp_path / "o.mp4", poster_jpg=tmp_path / "o.jpg", max_height=50
    )
    rendition = probe_video(tmp_path / "o.mp4")
    assert (rendition["width"], rendition["height"]) == (
        result["rendition_width"],
        result["rendition_height"],
    )
    assert rendition["height"] == 50 and rendition["width"] % 2 == 0
    assert rendition["width"] == pytest.approx(75 * 50 / 101, abs=2)


def test_transcode_refusal_leaves_nothing_behind(videos: dict[str, Path], tmp_path: Path) -> None:
    out, poster = tmp_path / "x.mp4", tmp_path / "x.jpg"
    with pytest.raises(VideoRefused):
        transcode_for_browser(videos["text"], out_mp4=out, poster_jpg=poster)
    assert list(tmp_path.iterdir()) == []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gradcam3d", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_probe_prints_json_and_refuses_with_status_2(videos: dict[str, Path]) -> None:
    done = _cli("probe", str(videos["avi_vfr"]))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["ok"] is True and info["frame_count"] == 40
    refused = _cli("probe", str(videos["mp4"]), "--max-frames", "10")
    assert refused.returncode == 2
    last = json.loads(refused.stdout.strip().splitlines()[-1])
    assert last == {
        "ok": False,
        "code": "video_too_many_frames",
        "error": "The video has 40 frames; the limit is 10.",
    }
    assert "limit is 10" in refused.stderr


def test_cli_transcode_writes_rendition_and_poster(videos: dict[str, Path], tmp_path: Path) -> None:
    done = _cli(
        "transcode",
        str(videos["webm"]),
        "--out",
        str(tmp_path / "w.mp4"),
        "--poster",
        str(tmp_path / "w.jpg"),
        "--max-height",
        "24",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rendition_height"] == 24 and Path(result["poster"]).exists()


def test_probe_cli_does_not_import_tensorflow(videos: dict[str, Path]) -> None:
    code = (
        "import sys, gradcam3d.video, gradcam3d.preprocess;"
        f"gradcam3d.video.probe_video({str(videos['mp4'])!r});"
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
    assert np.__name__  # numpy is the only heavy import allowed here


def test_probe_counts_real_packets_when_tags_forge_ffmpeg_statistics(videos: dict[str, Path]) -> None:
    """The title and a tag name claim "7 packets read", 0.1 s and 10x10; the file has 300 frames."""
    with pytest.raises(VideoRefused) as refused:
        probe_video(videos["forged"], limits=VideoLimits(max_frames=100))
    assert refused.value.code == "video_too_many_frames"
    assert "300 frames" in str(refused.value)
    info = probe_video(videos["forged"])
    assert info["frame_count"] == 300
    assert (info["width"], info["height"]) == (64, 48)
    assert info["duration_seconds"] == pytest.approx(12.0, abs=0.1)


def test_a_matroska_file_starting_late_is_measured_from_its_first_frame(tmp_path: Path) -> None:
    # FFmpeg's Matroska muxer writes the end time (1238.6 s) as the duration of a 4-second
    # stream that starts at 1234.567 s; the video is 4 s long, not over the 600 s limit.
    path = vf.make_gop_video(tmp_path / "late.mkv", frames=vf.coded_frames(count=100), start_seconds=1234.567)
    info = probe_video(path)
    assert info["duration_seconds"] == pytest.approx(4.0, abs=0.1)
    assert info["start_seconds"] == pytest.approx(1234.567, abs=1e-3)
    with pytest.raises(VideoRefused) as refused:
        probe_video(path, limits=VideoLimits(max_seconds=3.0))
    assert refused.value.code == "video_too_long"


def test_probe_duration_limit_holds_when_tags_forge_a_short_duration(videos: dict[str, Path]) -> None:
    with pytest.raises(VideoRefused) as refused:
        probe_video(videos["forged"], limits=VideoLimits(max_seconds=5.0))
    assert refused.value.code == "video_too_long"


def test_decode_timestamps_and_decoded_count_ignore_forged_showinfo_and_statistics_tags(
    videos: dict[str, Path],
) -> None:
    decoded = decode_frames(videos["forged"], select=[10, 20], size=(32, 24))
    assert len(decoded.frames) == 2
    assert decoded.pts_seconds == [pytest.approx(0.4), pytest.approx(0.8)]
    assert decoded.decoded_count == 300


def test_transcode_caps_ffmpeg_at_two_threads(
    videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradcam3d.video as video

    calls: list[list[str]] = []
    real = video.run_ffmpeg

    def recording(args, **kwargs):
        calls.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(video, "run_ffmpeg", recording)
    transcode_for_browser(videos["mp4"], out_mp4=tmp_path / "t.mp4", poster_jpg=tmp_path / "t.jpg")
    encode = next(args for args in calls if "libx264" in args)
    before_input, after_input = encode[: encode.index("-i")], encode[encode.index("-i") :]
    assert before_input[before_input.index("-threads") + 1] == "2"  # decoder
    assert after_input[after_input.index("-threads") + 1] == "2"  # encoder
    assert before_input[before_input.index("-filter_threads") + 1] == "1"


def test_transcode_refuses_clearly_when_no_poster_frame_can_be_written(
    videos: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gradcam3d.video as video

    real = video.run_ffmpeg

    def posterless(args, **kwargs):
        if "image2" in args:  # both poster attempts "succeed" without writing a file
            return None
        return real(args, **kwargs)

    monkeypatch.setattr(video, "run_ffmpeg", posterless)
    with pytest.raises(VideoRefused) as refused:
        transcode_for_browser(videos["mp4"], out_mp4=tmp_path / "p.mp4", poster_jpg=tmp_path / "p.jpg")
    assert refused.value.code == "video_no_poster"
    assert "poster" in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # no rendition without its poster, no temp files


@pytest.mark.parametrize("command", ["probe", "transcode", "preview"])
def test_cli_commands_accept_probe_and_processing_timeouts(command: str) -> None:
    from gradcam3d.cli import build_parser, limits_from_args

    parser = build_parser()
    extra = {
        "probe": [],
        "transcode": ["--out", "o.mp4", "--poster", "p.jpg"],
        "preview": ["--input-shape", "4,8,8,3", "--out", "d"],
    }[command]
    args = parser.parse_args([command, "v.mp4", *extra, "--timeout", "7", "--processing-timeout", "42"])
    limits = limits_from_args(args)
    assert (limits.timeout_seconds, limits.processing_timeout_seconds) == (7.0, 42.0)
