"""AnalysisParams (typed analysis parameters) and the package's import contract."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from gradcam3d import AnalysisParams, PreprocessParams, Refusal
from gradcam3d.cli import build_parser
from tests.engine.conftest_demo import REPO_ROOT


def test_defaults_are_the_command_lines() -> None:
    args = build_parser().parse_args(["analyze", "m.h5", "v.mp4", "--out", "o"])
    defaults = AnalysisParams()
    assert (
        defaults.method,
        defaults.pooling,
        defaults.alpha,
        defaults.top_k,
        defaults.video_fps,
        defaults.colormap,
        defaults.image_format,
        defaults.expected_class,
    ) == (
        args.method,
        args.pooling,
        args.alpha,
        args.top_k,
        args.fps,
        args.colormap,
        args.image_format,
        args.expected_class,
    )
    assert defaults.preprocess.scaling == args.scaling == "auto"
    assert (defaults.preprocess.frame_stride, defaults.preprocess.frame_offset) == (
        args.frame_stride,
        args.frame_offset,
    )
    assert defaults.limits.max_bytes == args.max_bytes


def test_json_form_round_trips_and_fills_every_default() -> None:
    params = AnalysisParams.from_dict(
        {
            "method": "layercam",
            "layers": ["m/a", "m/b", "m/a"],
            "class_labels": {"0": "x", "2": "z"},
            "preprocess": {"scaling": None},
        }
    )
    data = params.to_dict()
    assert data["pooling"] is None  # recorded as the method really runs
    assert data["layers"] == ["m/a", "m/b"] and data["class_labels"] == ["x", "", "z"]
    assert data["preprocess"]["scaling"] == "auto" and data["limits"]["max_frames"] == 36_000
    assert list(data) == [
        "expected_class",
        "layers",
        "method",
        "pooling",
        "bbox_threshold",
        "min_box_area",
        "colormap",
        "alpha",
        "class_labels",
        "top_k",
        "video_fps",
        "image_format",
        "inference_frames",
        "display_min_height",
        "preprocess",
        "limits",
    ]
    assert AnalysisParams.from_dict(json.loads(json.dumps(data))) == params
    assert params.with_scaling("raw").to_dict()["preprocess"]["scaling"] == "raw"
    assert params.class_label(2) == "z" and params.class_label(1) == "1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"alpah": 0.3}, "Unknown analysis parameter(s): alpah."),
        ({"alpha": 2}, "The parameter 'alpha' must be between 0 and 1."),
        ({"top_k": 1.5}, "The parameter 'top_k' must be a whole number."),
        ({"method": "layercam", "pooling": "temporal"}, "has no gradient pooling"),
        ({"method": "scorecam"}, "Unknown method 'scorecam'"),
        ({"bbox_threshold": 1.0}, "must be below 1"),
        ({"layers": "conv1"}, "'layers' must be a non-empty list"),
        ({"preprocess": {"frame_stride": 0}}, "frame_stride must be an integer >= 1, not 0."),
        (
            {"preprocess": {"scaling": "bogus"}},
            "scaling must be one of unit, symmetric, raw, mean_std, not 'bogus'.",
        ),
        ({"preprocess": "stretch"}, "'preprocess' must be an object of options."),
        ({"limits": {"max_apples": 1}}, "Bad preprocessing options:"),
    ],
)
def test_bad_values_are_refused_with_a_sentence(data: dict, message: str) -> None:
    with pytest.raises(Refusal) as refused:
        AnalysisParams.from_dict(data)
    assert message in str(refused.value) and refused.value.code == "bad_params"


def test_constructing_directly_validates_too() -> None:
    with pytest.raises(Refusal):
        AnalysisParams(video_fps=0)
    params = AnalysisParams(preprocess=PreprocessParams(scaling="symmetric"), layers=["m/a"])  # type: ignore[arg-type]
    assert params.layers == ("m/a",) and params.preprocess.scaling == "symmetric"
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.alpha = 0.5  # type: ignore[misc]  # frozen


def test_importing_the_package_has_no_side_effects() -> None:
    code = (
        "import os, sys, json\n"
        "import gradcam3d, gradcam3d.cli\n"
        # (OpenCV's import sets LD_LIBRARY_PATH for its own libraries; not ours to police.)
        "ours = sorted(k for k in os.environ if k.startswith(('TF_', 'KERAS_')))\n"
        "print(json.dumps({'env_changed': bool(ours), 'tf': 'tensorflow' in sys.modules,"
        " 'keras': 'keras' in sys.modules, 'demo': 'demo' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS_"))}  # TensorFlow's own
    env.pop("TF_CLI_CONFIG_FILE", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "env_changed": False,
        "tf": False,
        "keras": False,
        "demo": False,
    }


def test_the_engine_command_line_has_no_demo_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradcam3d", "make-demo", "--out", "x"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "invalid choice: 'make-demo'" in done.stderr
