"""The offline demo: `python -m demo` trains a real Conv3D classifier that
classifies its own sample videos as the engine will feed them, and records the ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from demo import synthetic
from tests.engine.conftest_demo import REPO_ROOT, build_demo, demo_bundle  # noqa: F401


def decode_and_preprocess(*, path: str, frames: int, height: int, width: int) -> tuple[np.ndarray, int]:
    """The engine's default preprocessing, written out independently of demo.build:
    decode every frame, keep the 2nd, 4th, ..., pick `frames` with linspace, stretch, [0, 1]."""
    capture = cv2.VideoCapture(path)
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    kept = decoded[1::2]
    picks = np.linspace(0, len(kept) - 1, frames).astype(int)
    clip = np.stack([cv2.resize(kept[i], (width, height), interpolation=cv2.INTER_AREA) for i in picks])
    return clip.astype(np.float32) / 255.0, len(decoded)


@pytest.mark.slow
def test_make_demo_prints_the_contract_and_writes_every_file(demo_bundle: dict[str, Any]) -> None:  # noqa: F811
    result = demo_bundle["cli_result"]
    assert result["ok"] is True
    assert result["model"] == demo_bundle["model"] and Path(result["model"]).is_file()
    assert Path(result["classmap"]).is_file()
    assert len(result["videos"]) == len(demo_bundle["videos"]) >= len(synthetic.CLASS_NAMES) + 1
    for video in result["videos"]:
        assert set(video) >= {"path", "name", "true_class", "labelled_class", "description"}
        assert Path(video["path"]).is_file() and video["path"].endswith(".mp4")
    # The class map is `index: label` lines, as the original tool's ClassMap.txt.
    lines = Path(demo_bundle["classmap"]).read_text().splitlines()
    parsed = {int(index): label.strip() for index, label in (line.split(":", 1) for line in lines)}
    assert parsed == dict(enumerate(synthetic.CLASS_NAMES))
    assert demo_bundle["held_out_accuracy"] >= 0.9
    assert demo_bundle["training"]["n_held_out"] >= 100
    mislabelled = [v for v in demo_bundle["videos"] if v["labelled_class"] != v["true_class"]]
    assert len(mislabelled) == 1
    assert {v["true_class"] for v in demo_bundle["videos"]} == set(range(len(synthetic.CLASS_NAMES)))


@pytest.mark.slow
def test_saved_model_reloads_safely_and_predicts_each_videos_true_class(demo_bundle: dict[str, Any]) -> None:  # noqa: F811
    import keras

    model = keras.saving.load_model(demo_bundle["model"], safe_mode=True, compile=False)
    conv3d_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    assert len(conv3d_layers) >= 3
    _, frames, height, width, channels = model.input_shape
    assert [frames, height, width, channels] == demo_bundle["input_shape"]
    for video in demo_bundle["videos"]:
        clip, decoded_count = decode_and_preprocess(
            path=video["path"], frames=frames, height=height, width=width
        )
        assert decoded_count == video["frame_count"] >= 2 * frames
        probabilities = np.asarray(model(clip[None], training=False))[0]
        assert int(np.argmax(probabilities)) == video["true_class"], (video["name"], probabilities.round(3))
        assert probabilities[video["true_class"]] >= 0.5


@pytest.mark.slow
def test_ground_truth_boxes_follow_the_object_in_the_decoded_video(demo_bundle: dict[str, Any]) -> None:  # noqa: F811
    # The object is a flat saturated colour: inside its box the decoded pixels are far more
    # uniform than the textured background around it, in every frame.
    for video in demo_bundle["videos"]:
        capture = cv2.VideoCapture(video["path"])
        frame_index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            x, y, w, h = video["boxes"][frame_index]
            assert x >= 0 and y >= 0 and x + w <= video["width"] and y + h <= video["height"]
            centre = frame[
                y + h // 2 - h // 4 : y + h // 2 + h // 4 + 1, x + w // 2 - w // 4 : x + w // 2 + w // 4 + 1
            ]
            background_mask = np.ones(frame.shape[:2], dtype=bool)
            background_mask[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2] = False
            object_colour = np.median(centre.reshape(-1, 3), axis=0)
            distance_inside = np.abs(centre.reshape(-1, 3) - object_colour).sum(axis=1).mean()
            distance_outside = np.abs(frame[background_mask] - object_colour).sum(axis=1).mean()
            assert distance_inside * 4 < distance_outside, (video["name"], frame_index)
            frame_index += 1
        capture.release()
        assert frame_index == len(video["boxes"])


@pytest.mark.slow
def test_second_run_reuses_the_demo_without_retraining(demo_bundle: dict[str, Any]) -> None:  # noqa: F811
    model_path = Path(demo_bundle["model"])
    modified = model_path.stat().st_mtime_ns
    started = time.perf_counter()
    result = build_demo(out_dir=Path(demo_bundle["root"]))
    assert result["reused"] is True
    assert time.perf_counter() - started < 30  # no training happened (it takes minutes)
    assert model_path.stat().st_mtime_ns == modified
    assert json.loads((Path(demo_bundle["root"]) / "demo.json").read_text())["seed"] == 0


def test_negative_seed_is_refused_with_the_contracts_json() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "demo", "--out", os.devnull + "-never-created", "--seed", "-1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    last = json.loads(completed.stdout.strip().splitlines()[-1])
    assert last["ok"] is False and last["code"] == "bad_seed" and "seed" in last["error"]


def test_last_conv3d_map_keeps_two_pixel_cells_and_a_view_wider_than_the_object() -> None:
    # The pointing game needs the last layer's peak inside a box enlarged by only ~1-3 pixels
    # at 32x32: a 4-pixel cell grid, or units seeing only one edge of the object, missed it.
    import demo.build as demo

    model = demo.build_model(num_classes=len(synthetic.CLASS_NAMES))
    import keras

    conv3d = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    _, frames, height, width, _ = conv3d[-1].output.shape
    assert (frames, height, width) == (demo.MODEL_FRAMES, demo.MODEL_SIZE // 2, demo.MODEL_SIZE // 2)
    spatial_kernels = [layer.kernel_size[1] for layer in conv3d]
    assert sum(k - 1 for k in spatial_kernels[1:]) >= 4  # after the pooling: >= 12-pixel view


def test_make_demo_trains_with_onednn_in_its_own_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # oneDNN makes training about 4x faster; the engine keeps it off (its Grad-CAM gradients
    # differ), so `python -m demo` switches it on itself, before TensorFlow loads in its process.
    code = (
        "import os, sys\n"
        "import demo.build as build\n"
        "import demo.__main__ as command\n"
        "assert 'TF_ENABLE_ONEDNN_OPTS' not in os.environ  # importing sets nothing\n"
        "seen = {}\n"
        "build.make_demo = lambda **kw: seen.update(flag=os.environ['TF_ENABLE_ONEDNN_OPTS'], tf='tensorflow' in sys.modules) or 1/0\n"
        "args = command.build_parser().parse_args(['--out', 'unused'])\n"
        "try:\n    command.make_demo_command(args)\nexcept ZeroDivisionError:\n    pass\n"
        "print(seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == "{'flag': '1', 'tf': False}"
