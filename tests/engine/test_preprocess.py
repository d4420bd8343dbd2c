"""Turning a video into the model input as the original tool did (gradcam3d.preprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcam3d.errors import Refusal, VideoRefused
from gradcam3d.preprocess import PreprocessParams, preprocess_video, select_source_indices
from gradcam3d.video import probe_video
from tests.engine import video_factories as vf

REPO = Path(__file__).resolve().parents[2]
# 40 frames, every 2nd from the second (1, 3, ..., 39: 20 kept), T=16 at
# linspace(0, 19, 16) truncated = 0 1 2 3 5 6 7 8 10 11 12 13 15 16 17 19 of the kept frames.
ORIGINAL_TOOL_INDICES_40_FRAMES_T16 = [1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 25, 27, 31, 33, 35, 39]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pre")
    frames40 = vf.numbered_frames(count=40)
    return {
        "mp4": vf.make_mp4(folder / "clip.mp4", frames=frames40),
        "avi_vfr": vf.make_avi(folder / "vfr.avi", frames=frames40, vfr=True),
        "vfr_mp4": vf.make_vfr_mp4(folder / "vfr.mp4", frames=frames40),
        "webm": vf.make_webm(folder / "clip.webm", frames=frames40),
        "short": vf.make_mp4(folder / "short.mp4", frames=vf.numbered_frames(count=20)),
        "bands": vf.make_mkv(folder / "bands.mkv", frames=vf.make_three_band_frames(count=12), lossless=True),
    }


def test_original_tool_selection_is_pinned_by_hand() -> None:
    assert select_source_indices(frame_count=40, frames_needed=16) == ORIGINAL_TOOL_INDICES_40_FRAMES_T16
    assert select_source_indices(frame_count=40, frames_needed=16, stride=1, offset=0) == [
        int(v) for v in np.linspace(0, 39, 16)
    ]
    assert select_source_indices(frame_count=33, frames_needed=16) == list(range(1, 33, 2))


def test_too_few_frames_is_refused_saying_how_many_there_are_and_are_needed(videos: dict[str, Path]) -> None:
    with pytest.raises(VideoRefused) as refused:
        preprocess_video(videos["short"], input_shape=(16, 32, 32, 3))
    message = str(refused.value)
    assert refused.value.code == "video_too_short"
    assert "20 frames" in message and "leaves 10" in message and "needs 16" in message


@pytest.mark.parametrize("kind", ["mp4", "avi_vfr", "vfr_mp4", "webm"])
def test_model_frames_are_exactly_the_original_tools_source_frames(
    videos: dict[str, Path], kind: str
) -> None:
    clip = preprocess_video(videos[kind], input_shape=(16, 24, 32, 3))
    assert clip.source_frame_indices == ORIGINAL_TOOL_INDICES_40_FRAMES_T16
    assert clip.source_frame_count == 40
    # Each decoded frame carries its own number: the pixels are the frames we claim they are.
    assert vf.frame_numbers(clip.frames_rgb) == ORIGINAL_TOOL_INDICES_40_FRAMES_T16
    assert clip.x.shape == (1, 16, 24, 32, 3) and clip.x.dtype == np.float32
    assert clip.frames_rgb.shape == (16, 24, 32, 3) and clip.frames_rgb.dtype == np.uint8


def test_timestamps_follow_the_real_frame_times_of_a_vfr_video(videos: dict[str, Path]) -> None:
    clip = preprocess_video(videos["vfr_mp4"], input_shape=(16, 24, 32, 3))
    times = vf.vfr_times(count=40, fast_frames=20, fps=25.0, slow_interval=0.1)
    expected = [times[i] for i in ORIGINAL_TOOL_INDICES_40_FRAMES_T16]
    assert clip.timestamps == pytest.approx(expected, abs=2e-3)
    constant = preprocess_video(videos["mp4"], input_shape=(16, 24, 32, 3))
    assert constant.timestamps == pytest.approx(
        [i / 25.0 for i in ORIGINAL_TOOL_INDICES_40_FRAMES_T16], abs=2e-3
    )


def test_stride_and_offset_options_change_the_selection(videos: dict[str, Path]) -> None:
    clip = preprocess_video(
        videos["mp4"], input_shape=(8, 16, 16, 3), params=PreprocessParams(frame_stride=3, frame_offset=0)
    )
    kept = list(range(0, 40, 3))  # 14 kept
    expected = [kept[i] for i in np.linspace(0, 13, 8).astype(int)]
    assert clip.source_frame_indices == expected
    assert vf.frame_numbers(clip.frames_rgb) == expected


def test_scaling_modes_give_the_documented_ranges(videos: dict[str, Path]) -> None:
    shape = (4, 16, 16, 3)
    unit = preprocess_video(videos["mp4"], input_shape=shape)
    frames = unit.frames_rgb.astype(np.float32)
    np.testing.assert_allclose(unit.x[0], frames / 255.0, atol=1e-6)
    symmetric = preprocess_video(
        videos["mp4"], input_shape=shape, params=PreprocessParams(scaling="symmetric")
    )
    np.testing.assert_allclose(symmetric.x[0], frames / 127.5 - 1.0, atol=1e-6)
    raw = preprocess_video(videos["mp4"], input_shape=shape, params=PreprocessParams(scaling="raw"))
    np.testing.assert_array_equal(raw.x[0], frames)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = preprocess_video(
        videos["mp4"], input_shape=shape, params=PreprocessParams(scaling="mean_std", mean=mean, std=std)
    )
    np.testing.assert_allclose(normalised.x[0], (frames / 255.0 - np.array(mean)) / np.array(std), atol=1e-5)
    assert unit.x.min() >= 0.0 and unit.x.max() <= 1.0 and symmetric.x.min() >= -1.0


def test_grayscale_model_gets_one_channel_while_display_stays_rgb(videos: dict[str, Path]) -> None:
    clip = preprocess_video(videos["mp4"], input_shape=(8, 20, 28, 1))
    assert clip.x.shape == (1, 8, 20, 28, 1)
    assert clip.frames_rgb.shape == (8, 20, 28, 3)
    luma = clip.frames_rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(clip.x[0, ..., 0], luma / 255.0, atol=1e-5)


def _colour_at(frame: np.ndarray, *, x: int, y: int) -> str:
    red, green, blue = (int(v) for v in frame[y, x])
    if max(red, green, blue) < 40:
        return "black"
    return ("red", "green", "blue")[int(np.argmax([red, green, blue]))]


@pytest.mark.parametrize("engine", ["ffmpeg", "cv2"])
def test_resize_modes_stretch_crop_and_letterbox(videos: dict[str, Path], engine: str) -> None:
    shape = (4, 32, 32, 3)  # source is 128x64: red | green green | blue
    stretch = preprocess_video(videos["bands"], input_shape=shape, resize_engine=engine).frames_rgb[0]
    assert [_colour_at(stretch, x=x, y=16) for x in (2, 16, 29)] == ["red", "green", "blue"]
    crop = preprocess_video(
        videos["bands"],
        input_shape=shape,
        params=PreprocessParams(resize_mode="center_crop"),
        resize_engine=engine,
    ).frames_rgb[0]
    # Filling 32x32 from 128x64 keeps the middle 64 columns: only the green band.
    assert [_colour_at(crop, x=x, y=16) for x in (1, 16, 30)] == ["green", "green", "green"]
    letterbox = preprocess_video(
        videos["bands"],
        input_shape=shape,
        params=PreprocessParams(resize_mode="letterbox"),
        resize_engine=engine,
    ).frames_rgb[0]
    # Fitting 128x64 into 32x32 gives 32x16 with 8 black rows above and below.
    assert [_colour_at(letterbox, x=16, y=y) for y in (2, 16, 29)] == ["black", "green", "black"]
    assert [_colour_at(letterbox, x=x, y=16) for x in (2, 29)] == ["red", "blue"]


def test_ffmpeg_and_cv2_resizing_agree(videos: dict[str, Path]) -> None:
    by_ffmpeg = preprocess_video(videos["webm"], input_shape=(16, 24, 32, 3)).frames_rgb.astype(int)
    by_cv2 = preprocess_video(
        videos["webm"], input_shape=(16, 24, 32, 3), resize_engine="cv2"
    ).frames_rgb.astype(int)
    assert np.abs(by_ffmpeg - by_cv2).mean() < 2.0


def test_params_round_trip_and_bad_values_are_refused() -> None:
    params = PreprocessParams(
        frame_stride=3, frame_offset=0, resize_mode="letterbox", scaling="mean_std", mean=(0.5,), std=(0.25,)
    )
    assert PreprocessParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    assert PreprocessParams.from_dict({}) == PreprocessParams()
    assert PreprocessParams().to_dict() == {
        "frame_stride": 2,
        "frame_offset": 1,
        "resize_mode": "stretch",
        "scaling": "unit",
        "mean": None,
        "std": None,
    }
    for bad in (
        {"frame_stride": 0},
        {"frame_offset": -1},
        {"resize_mode": "zoom"},
        {"scaling": "mean_std"},
        {"scaling": "mean_std", "mean": [0.5], "std": [0]},
        {"colour": "red"},
        {"frame_stride": 1.5},
    ):
        with pytest.raises(Refusal):
            PreprocessParams.from_dict(bad)


def test_bad_input_shapes_are_refused(videos: dict[str, Path]) -> None:
    for shape in ((16, 32, 32, 4), (16, 32, 32), (0, 32, 32, 3)):
        with pytest.raises(VideoRefused):
            preprocess_video(videos["mp4"], input_shape=shape)


def test_cli_preview_writes_the_model_frames_at_3_fps(videos: dict[str, Path], tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcam3d",
            "preview",
            str(videos["avi_vfr"]),
            "--input-shape",
            "16,32,32,3",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["source_frame_indices"] == ORIGINAL_TOOL_INDICES_40_FRAMES_T16
    assert len(result["timestamps"]) == 16
    preview = probe_video(result["clip"])
    assert Path(result["clip"]) == tmp_path / "preview.mp4"
    assert preview["frame_count"] == 16 and preview["fps"] == pytest.approx(3.0)
    assert (preview["codec"], preview["pix_fmt"]) == ("h264", "yuv420p")


@pytest.mark.parametrize(
    "scaling,bounds", [(None, (0.0, 1.0)), ("raw", (0.0, 255.0)), ("symmetric", (-1.0, 1.0))]
)
def test_cli_preview_reports_the_scaling_and_the_range_of_values_the_model_receives(
    videos: dict[str, Path],
    tmp_path: Path,
    scaling: str | None,
    bounds: tuple[float, float],
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcam3d",
            "preview",
            str(videos["bands"]),
            "--input-shape",
            "4,32,32,3",
            "--out",
            str(tmp_path),
            *(["--scaling", scaling] if scaling else []),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scaling"] == (scaling or "unit") == result["params"]["scaling"]
    # Exactly the range of the input the model would be given, e.g. [0, 255] for "raw".
    clip = preprocess_video(
        videos["bands"], input_shape=(4, 32, 32, 3), params=PreprocessParams(scaling=result["scaling"])
    )
    assert result["input_range"] == [float(clip.x.min()), float(clip.x.max())]
    low, high = result["input_range"]
    assert bounds[0] <= low < high <= bounds[1]
    assert high > bounds[1] / 2  # the bands are saturated colours: near the top of the range


def test_cli_preview_refuses_a_short_video_with_status_2(videos: dict[str, Path], tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcam3d",
            "preview",
            str(videos["short"]),
            "--input-shape",
            "16,32,32,3",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert json.loads(done.stdout.strip().splitlines()[-1])["code"] == "video_too_short"
    assert not (tmp_path / "preview.mp4").exists()


def test_video_without_timestamps_or_frame_rate_is_refused_instead_of_nan_times(
    videos: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gradcam3d.preprocess as preprocess

    real_probe, real_decode = preprocess.probe_video, preprocess.decode_frames

    def probe_without_rate(*args, **kwargs):
        return {**real_probe(*args, **kwargs), "fps": None}

    def decode_without_pts(*args, **kwargs):
        decoded = real_decode(*args, **kwargs)
        decoded.pts_seconds = [None] * len(decoded.pts_seconds)
        return decoded

    monkeypatch.setattr(preprocess, "probe_video", probe_without_rate)
    monkeypatch.setattr(preprocess, "decode_frames", decode_without_pts)
    with pytest.raises(VideoRefused) as refused:
        preprocess_video(videos["mp4"], input_shape=(16, 24, 32, 3))
    assert refused.value.code == "video_no_timestamps"
    assert "no timestamps" in str(refused.value)


def test_missing_pts_fall_back_to_index_over_frame_rate(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradcam3d.preprocess as preprocess

    real_decode = preprocess.decode_frames

    def decode_without_pts(*args, **kwargs):
        decoded = real_decode(*args, **kwargs)
        decoded.pts_seconds = [None] * len(decoded.pts_seconds)
        return decoded

    monkeypatch.setattr(preprocess, "decode_frames", decode_without_pts)
    clip = preprocess_video(videos["mp4"], input_shape=(16, 24, 32, 3))
    assert clip.timestamps == [round(i / 25.0, 6) for i in ORIGINAL_TOOL_INDICES_40_FRAMES_T16]
