"""run_analysis end to end on a small real model and video: the manifest lists exactly the files
written, with the right counts per layer, and the `analyze` / `worker` commands speak the
engine contract (docs/engine-contract.md)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcam3d.classmap import parse_class_map
from gradcam3d.errors import Refusal
from gradcam3d.ffmpeg import encode_video
from gradcam3d.manifest import sha256_file

REPO = Path(__file__).resolve().parents[2]
FRAMES, SIZE, CLASSES = 8, 16, 3
LABELS = ["walking", "running", "jumping"]
ENGINE_TIMEOUT = 240
# Every figure in "timings" is a measured stage (docs/engine-contract.md).
MEASURED_STAGES = {
    "load",
    "trace",
    "preprocess",
    "preprocess_wait",
    "gradcam",
    "render",
    "render_preprocessed_video",
    "total",
}


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    L = keras.layers
    folder = tmp_path_factory.mktemp("pipeline")
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((FRAMES, SIZE, SIZE, 3)),
            L.Conv3D(4, 3, padding="same", activation="relu", name="conv1"),
            L.MaxPooling3D((1, 2, 2)),
            L.Conv3D(6, 3, padding="same", activation="relu", name="conv2"),
            L.GlobalAveragePooling3D(),
            L.Dense(CLASSES, activation="softmax", name="scores"),
        ],
        name="small",
    )
    model_path = folder / "model.h5"
    model.save(model_path)
    # A bright square moving right over a dark, noisy background.
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, (30, 48, 64, 3), dtype=np.uint8)
    for index in range(30):
        frames[index, 16:32, 2 * index : 2 * index + 16] = 230
    video_path = folder / "clip.mp4"
    encode_video(frames, video_path, fps=15)
    return {"model": model_path, "video": video_path, "folder": folder}


def run(small_inputs: dict[str, Any], out: Path, **params: Any) -> dict[str, Any]:
    from gradcam3d.pipeline import run_analysis

    stages: list[tuple[str, float]] = []
    events: list[dict[str, Any]] = []
    manifest = run_analysis(
        small_inputs["model"],
        small_inputs["video"],
        {"class_labels": LABELS, **params},
        out,
        progress=lambda stage, fraction: stages.append((stage, fraction)),
        on_event=events.append,
    )
    manifest["_stages"], manifest["_events"] = stages, events
    return manifest


def files_by_role(manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    roles: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["files"]:
        roles.setdefault(entry["role"], []).append(entry)
    return roles


def assert_every_listed_file_exists_and_matches(out: Path, manifest: dict[str, Any]) -> None:
    listed = {entry["path"] for entry in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk  # nothing missing, nothing unlisted
    for entry in manifest["files"]:
        path = out / entry["path"]
        assert entry["bytes"] == path.stat().st_size > 0
        assert entry["sha256"] == sha256_file(path)


def assert_timings_are_measurements(manifest: dict[str, Any]) -> None:
    timings = manifest["timings"]
    # The prediction comes out of the Grad-CAM forward pass: it has no time of its own to show.
    assert "predict" not in timings
    assert set(timings) == MEASURED_STAGES
    assert all(isinstance(value, float) and math.isfinite(value) for value in timings.values())
    # Every stage ran and took time; only the wait for a preprocessing already done may be 0.
    assert all(timings[stage] > 0 for stage in MEASURED_STAGES - {"preprocess_wait"}), timings
    assert timings["preprocess_wait"] >= 0
    # The main thread's stages follow one another, so together they fit in the total (each is
    # rounded to 0.1 ms).
    sequential = sum(timings[stage] for stage in ("load", "trace", "preprocess_wait", "gradcam", "render"))
    assert sequential <= timings["total"] + 5e-4, timings


def test_manifest_lists_every_file_with_counts_per_layer_and_no_inference_maps_when_right(
    small_inputs, tmp_path
) -> None:
    out = tmp_path / "right"
    first = run(small_inputs, out)
    predicted = first["prediction"]["predicted_class"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["prediction"] == first["prediction"] and on_disk["files"] == first["files"]
    assert_every_listed_file_exists_and_matches(out, on_disk)
    assert on_disk["schema"] == 1
    assert set(on_disk["engine"]) >= {"gradcam3d", "tensorflow", "keras", "ffmpeg", "numpy", "opencv"}
    assert on_disk["inputs"]["model"]["sha256"] == sha256_file(small_inputs["model"])
    assert on_disk["inputs"]["video"]["bytes"] == small_inputs["video"].stat().st_size
    assert on_disk["params"]["method"] == "gradcam" and on_disk["params"]["alpha"] == 0.3
    assert on_disk["params"]["pooling"] == "global"
    assert on_disk["params"]["colormap"] == "jet" and on_disk["params"]["preprocess"]["frame_stride"] == 2
    assert on_disk["model"]["selected_layers"] == ["small/conv1", "small/conv2"]
    assert len(on_disk["preprocess"]["source_frame_indices"]) == FRAMES
    assert_timings_are_measurements(on_disk)
    # No scaling asked for and no scaling layer in the model: [0, 1], chosen by the model.
    scaling = on_disk["preprocess"]["scaling"]
    assert (scaling["name"], scaling["source"], scaling["suggested"]) == ("unit", "model", "unit")
    assert scaling["reason"].endswith(".") and on_disk["params"]["preprocess"]["scaling"] == "unit"
    low, high = scaling["input_range"]
    assert 0.0 <= low < high <= 1.0 and high > 0.5  # the bright square: 230 / 255
    probabilities = on_disk["prediction"]["probabilities"]
    assert len(probabilities) == CLASSES and abs(sum(probabilities) - 1) < 1e-6
    assert on_disk["prediction"]["predicted_class"] == int(np.argmax(probabilities))
    assert on_disk["prediction"]["top_k"][0] == {
        "class": predicted,
        "label": LABELS[predicted],
        "probability": probabilities[predicted],
    }
    assert on_disk["prediction"]["correct"] is None

    roles = files_by_role(on_disk)
    assert "inference_map" not in roles and "inference_legend" not in roles
    assert len(roles["preprocessed_video"]) == 1
    for layer in on_disk["layers"]:
        name = layer["name"]
        images = [e for e in roles["heatmap_image"] if e["layer"] == name]
        assert sorted(e["frame"] for e in images) == list(range(FRAMES))
        assert len([e for e in roles["heatmap_video"] if e["layer"] == name]) == 1
        assert len([e for e in roles["temporal_curve"] if e["layer"] == name]) == 1
        assert list(layer["boxes"]) == [str(predicted)] and len(layer["boxes"][str(predicted)]) == FRAMES
        assert len(layer["temporal_importance"][str(predicted)]) == FRAMES
        (raw_entry,) = [e for e in roles["raw_maps"] if e["layer"] == name]
        with np.load(out / raw_entry["path"]) as arrays:
            raw = arrays[f"raw_class{predicted}"]
            upsampled = arrays[f"upsampled_class{predicted}"]
        assert raw.dtype == upsampled.dtype == np.float32
        assert list(raw.shape) == layer["activation_shape"][:3]
        assert upsampled.shape == (FRAMES, SIZE, SIZE)
        assert float(raw.max()) == pytest.approx(layer["raw_max"][str(predicted)])
    stages = first["_stages"]
    assert stages[-1] == ("done", 1.0) and all(a[1] <= b[1] for a, b in zip(stages, stages[1:]))
    assert first["_events"] == [
        {"event": "prediction", "predicted_class": predicted, "probabilities": probabilities}
    ]

    # Same inputs again: byte-identical raw maps (the audit trail depends on it).
    again = run(small_inputs, tmp_path / "again")
    for entry, other in zip(files_by_role(on_disk)["raw_maps"], files_by_role(again)["raw_maps"]):
        with np.load(out / entry["path"]) as a, np.load(tmp_path / "again" / other["path"]) as b:
            for key in a.files:
                assert a[key].tobytes() == b[key].tobytes()


def test_wrong_prediction_adds_inference_maps_at_start_middle_end_and_a_legend(
    small_inputs, tmp_path
) -> None:
    probe_run = run(small_inputs, tmp_path / "probe", layers=["small/conv2"])
    wrong_class = (probe_run["prediction"]["predicted_class"] + 1) % CLASSES
    out = tmp_path / "wrong"
    manifest = run(small_inputs, out, expected_class=wrong_class, image_format="jpeg")
    assert_every_listed_file_exists_and_matches(out, manifest)
    predicted = manifest["prediction"]["predicted_class"]
    assert (
        manifest["prediction"]["correct"] is False
        and manifest["prediction"]["expected_label"] == LABELS[wrong_class]
    )
    roles = files_by_role(manifest)
    assert len(roles["inference_legend"]) == 1
    for layer in manifest["layers"]:
        maps = [e for e in roles["inference_map"] if e["layer"] == layer["name"]]
        assert sorted(e["frame"] for e in maps) == [0, FRAMES // 2, FRAMES - 1]
        assert all(e["media_type"] == "image/jpeg" for e in maps)
        assert set(layer["boxes"]) == {str(predicted), str(wrong_class)}
        with np.load(out / layer["raw_maps"]["path"]) as arrays:
            assert {f"raw_class{predicted}", f"raw_class{wrong_class}"} <= set(arrays.files)


@pytest.mark.parametrize(
    "params,code",
    [
        ({"expected_class": CLASSES}, "bad_expected_class"),
        ({"layers": ["small/no_such_layer"]}, "bad_layers"),
        ({"method": "magic"}, "bad_params"),
        ({"alpha": 2}, "bad_params"),
        ({"unknown_option": 1}, "bad_params"),
        # Per-frame weights asked of a method that has no pooling: refused, never ignored.
        ({"method": "layercam", "pooling": "temporal"}, "bad_params"),
        ({"method": "hirescam", "pooling": "temporal"}, "bad_params"),
        ({"preprocess": {"scaling": "twice"}}, "bad_params"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message_and_nothing_written(
    small_inputs, tmp_path, params, code
) -> None:
    from gradcam3d.pipeline import run_analysis

    out = tmp_path / "refused"
    with pytest.raises(Refusal) as caught:
        run_analysis(small_inputs["model"], small_inputs["video"], params, out)
    assert caught.value.code == code and str(caught.value).endswith(".")
    assert not (out / "manifest.json").exists()


def test_element_wise_method_records_no_pooling_in_the_manifest(small_inputs, tmp_path) -> None:
    from gradcam3d.params import AnalysisParams

    def normalise_params(params: dict) -> dict:
        return AnalysisParams.from_dict(params).to_dict()

    out = tmp_path / "layercam"
    manifest = run(small_inputs, out, method="layercam", pooling="global")
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["params"]["method"] == "layercam" and on_disk["params"]["pooling"] is None
    assert manifest["params"] == on_disk["params"]
    assert_timings_are_measurements(on_disk)
    # The default pooling is recorded as none too, and a recorded null runs again as it is.
    assert normalise_params({"method": "hirescam"})["pooling"] is None
    assert normalise_params(on_disk["params"])["pooling"] is None
    assert normalise_params({"method": "gradcam", "pooling": None})["pooling"] == "global"


def test_class_map_files_parse_as_the_original_tool_wrote_them() -> None:
    # Every other case is in tests/class_map_cases.py (tests/engine/test_classmap.py).
    assert parse_class_map("0: Basketball\n2: Diving\n", num_classes=3) == ["Basketball", "", "Diving"]
    with pytest.raises(Refusal):
        parse_class_map("0: Basketball\nDiving\n", num_classes=3)


def engine_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gradcam3d", *args]


def engine_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_cli_analyze_and_worker_follow_the_contract_and_agree(small_inputs, tmp_path) -> None:
    labels_file = tmp_path / "classmap.txt"
    labels_file.write_text("".join(f"{i}: {label}\n" for i, label in enumerate(LABELS)))
    cli_out = tmp_path / "cli"
    completed = subprocess.run(
        engine_command(
            "analyze",
            str(small_inputs["model"]),
            str(small_inputs["video"]),
            "--out",
            str(cli_out),
            "--labels",
            str(labels_file),
            "--expected-class",
            "1",
            "--progress-json",
        ),
        capture_output=True,
        text=True,
        timeout=ENGINE_TIMEOUT,
        cwd=REPO,
        env=engine_env(),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = [json.loads(line) for line in completed.stdout.strip().splitlines()]
    final = lines[-1]
    assert final["ok"] is True and Path(final["manifest"]) == (cli_out / "manifest.json").resolve()
    progress = [line for line in lines[:-1] if line.get("event") == "progress"]
    assert progress and progress[-1]["fraction"] == 1.0
    (prediction,) = [line for line in lines if line.get("event") == "prediction"]
    manifest = json.loads((cli_out / "manifest.json").read_text())
    assert manifest["prediction"]["predicted_class"] == prediction["predicted_class"]
    assert manifest["params"]["class_labels"] == LABELS and manifest["params"]["expected_class"] == 1
    # No --scaling: "auto", the model's choice (this model has no scaling layer: [0, 1]).
    assert (
        manifest["preprocess"]["scaling"]["source"] == "model"
        and manifest["params"]["preprocess"]["scaling"] == "unit"
    )

    refused = subprocess.run(
        engine_command(
            "analyze",
            str(small_inputs["model"]),
            str(small_inputs["video"]),
            "--out",
            str(tmp_path / "x"),
            "--expected-class",
            "9",
        ),
        capture_output=True,
        text=True,
        timeout=ENGINE_TIMEOUT,
        cwd=REPO,
        env=engine_env(),
    )
    assert refused.returncode == 2
    assert json.loads(refused.stdout.strip().splitlines()[-1])["code"] == "bad_expected_class"
    assert "expected class 9" in refused.stderr

    # The warm worker: ready first, then one job from stdin, run like analyze --progress-json.
    worker = subprocess.Popen(
        engine_command("worker"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=engine_env(),
    )
    try:
        assert json.loads(worker.stdout.readline()) == {"event": "ready"}
        worker_out = tmp_path / "worker"
        job = {
            "model": str(small_inputs["model"]),
            "video": str(small_inputs["video"]),
            "out": str(worker_out),
            "params": {"expected_class": 1, "class_labels": LABELS},
        }
        started = time.perf_counter()
        stdout, stderr = worker.communicate(json.dumps(job) + "\n", timeout=ENGINE_TIMEOUT)
        job_seconds = time.perf_counter() - started
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr[-2000:]
    worker_lines = [json.loads(line) for line in stdout.strip().splitlines()]
    assert worker_lines[-1]["ok"] is True and any(line.get("event") == "prediction" for line in worker_lines)
    worker_manifest = json.loads((worker_out / "manifest.json").read_text())
    print(
        f"worker job took {job_seconds:.2f} s after ready; engine total {worker_manifest['timings']['total']:.2f} s"
    )
    # Two separate processes, same inputs and parameters: byte-identical maps and images.
    assert worker_manifest["params"] == manifest["params"]
    assert worker_manifest["preprocess"]["scaling"] == manifest["preprocess"]["scaling"]
    compared = ("raw_maps", "heatmap_image", "inference_map")
    cli_hashes = {e["path"]: e["sha256"] for e in manifest["files"] if e["role"] in compared}
    worker_hashes = {e["path"]: e["sha256"] for e in worker_manifest["files"] if e["role"] in compared}
    assert cli_hashes == worker_hashes and len(cli_hashes) > FRAMES


def test_an_existing_analysis_is_never_overwritten(small_inputs, tmp_path) -> None:
    from gradcam3d.pipeline import run_analysis

    out = tmp_path / "done"
    out.mkdir()
    (out / "manifest.json").write_text('{"schema": 1}')
    with pytest.raises(Refusal) as caught:
        run_analysis(small_inputs["model"], small_inputs["video"], {}, out)
    assert caught.value.code == "out_exists"
    assert (out / "manifest.json").read_text() == '{"schema": 1}'


def _engine_threads() -> list[str]:
    import threading

    return [thread.name for thread in threading.enumerate() if thread.name.startswith("gradcam3d-")]


def test_a_bad_video_is_refused_after_the_concurrent_start_and_leaves_no_worker_behind(
    small_inputs, tmp_path
) -> None:
    from gradcam3d.pipeline import run_analysis

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    out = tmp_path / "refused-video"
    with pytest.raises(Refusal) as caught:
        run_analysis(small_inputs["model"], text, {}, out)
    assert caught.value.code == "video_unreadable"
    assert not (out / "manifest.json").exists()
    assert _engine_threads() == []


def test_a_model_refused_by_its_config_is_reported_before_the_video_is_read(small_inputs, tmp_path) -> None:
    from gradcam3d.pipeline import run_analysis
    from tests.engine import model_factories as mf

    marker = tmp_path / "lambda-ran"
    model = mf.write_lambda_model(directory=tmp_path, marker=marker)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(Refusal) as caught:
        run_analysis(model, text, {}, tmp_path / "refused-model")
    assert "Lambda" in str(caught.value) and not marker.exists()
    assert _engine_threads() == []


def test_several_heatmap_videos_encoded_in_one_ffmpeg_process_each_hold_their_own_frames(tmp_path) -> None:
    from gradcam3d.ffmpeg import encode_videos
    from gradcam3d.video import decode_frames
    from tests.engine import video_factories as vf

    frames = vf.numbered_frames(count=30, width=32, height=24)
    clips = [
        (frames[:10], tmp_path / "a.mp4"),
        (frames[10:13], tmp_path / "b" / "b.mp4"),
        (frames[13:], tmp_path / "c.mp4"),
    ]
    paths = encode_videos(clips, fps=4.0, preset="ultrafast")
    assert paths == [path for _, path in clips]
    for (expected, _), path in zip(clips, paths):
        decoded = decode_frames(path)
        assert vf.frame_numbers(decoded.frames) == vf.frame_numbers(expected)
        assert decoded.pts_seconds == pytest.approx([i / 4.0 for i in range(len(expected))])
    assert not list(tmp_path.rglob("*.partial.mp4"))
    with pytest.raises(ValueError):
        encode_videos(
            [(frames[:3], tmp_path / "d.mp4"), (vf.numbered_frames(count=3), tmp_path / "e.mp4")], fps=4.0
        )
    assert not (tmp_path / "d.mp4").exists() and not (tmp_path / "e.mp4").exists()


def test_a_model_that_fails_to_load_stops_the_preprocessing_still_running(
    small_inputs, tmp_path, monkeypatch
) -> None:
    """The model passes its config check but its weights do not load: the analysis fails at
    once and the FFmpeg run preprocessing the video is stopped, not waited for."""
    import threading

    import gradcam3d.pipeline as pipeline
    from gradcam3d.ffmpeg import FFmpegCancelled, run_ffmpeg
    from gradcam3d.pipeline import run_analysis

    seen: dict[str, object] = {}
    started = threading.Event()

    def slow_preprocess(path, *, cancel=None, **kwargs):
        seen["cancel"] = cancel
        started.set()
        try:  # a 60-second FFmpeg run that only a cancel can end early
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
            seen["stopped"] = exc
            raise

    def broken_weights(path):
        started.wait(30)
        raise Refusal("The model's weights cannot be read.", code="model_unloadable")

    monkeypatch.setattr(pipeline, "preprocess_video", slow_preprocess)
    monkeypatch.setattr(pipeline, "load_model_safely", broken_weights)
    with pytest.raises(Refusal) as caught:
        run_analysis(small_inputs["model"], small_inputs["video"], {}, tmp_path / "unloadable")
    assert caught.value.code == "model_unloadable"
    assert isinstance(seen.get("stopped"), FFmpegCancelled)
    assert _engine_threads() == []


def test_ffmpeg_runs_end_on_cancel_and_never_start_once_cancelled() -> None:
    import threading

    from gradcam3d.ffmpeg import FFmpegCancelled, FFmpegTimeout, run_ffmpeg

    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    with pytest.raises(FFmpegCancelled):
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
    timer.join()
    with pytest.raises(FFmpegCancelled):
        run_ffmpeg(["-version"], cancel=cancel)
    # With a cancel event the timeout still holds.
    with pytest.raises(FFmpegTimeout):
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
            timeout=0.3,
            cancel=threading.Event(),
        )
    # Popen.communicate() cannot resume feeding input after a timeout: cancel is for runs
    # without input bytes, and asking for both is refused rather than left to hang.
    with pytest.raises(ValueError):
        run_ffmpeg(["-version"], input_bytes=b"x", cancel=threading.Event())
