"""inspect_model reports the input rescaling a model does itself and suggests the scaling to use.

Real small models, built here and saved in both formats: Rescaling and Normalization (explicit
statistics and adapted ones, whose statistics live only in the weights), in Sequential and
Functional models, inside a nested "preprocessing" sub-model and inside TimeDistributed.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcam3d.modelcheck import inspect_model
from tests.engine import model_factories as factories

FORMATS = ("h5", "keras")
IMAGENET_MEAN_255 = [123.675, 116.28, 103.53]
IMAGENET_VARIANCE_255 = [58.395**2, 57.12**2, 57.375**2]
IMAGENET_MEAN_UNIT = [0.485, 0.456, 0.406]
IMAGENET_VARIANCE_UNIT = [0.229**2, 0.224**2, 0.225**2]


def layers() -> Any:
    import keras

    return keras.layers


def inspected(model: Any, directory: Path, fmt: str) -> dict[str, Any]:
    return inspect_model(factories.save_model(model, directory=directory, fmt=fmt))


def adapted_normalization(*, low: float, high: float, name: str = "norm") -> Any:
    norm = layers().Normalization(name=name)
    norm.adapt(np.random.default_rng(0).uniform(low, high, (64, 4, 8, 8, 3)).astype("float32"))
    return norm


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_rescaling_by_1_over_255_suggests_raw_pixels(tmp_path: Path, fmt: str, functional: bool) -> None:
    model = factories.conv3d_classifier_after(
        layers().Rescaling(1 / 255, name="to_unit"), functional=functional
    )
    info = inspected(model, tmp_path, fmt)
    assert info["input_preprocessing"] == [
        {
            "layer": "preprocessed/to_unit",
            "class_name": "Rescaling",
            "scale": pytest.approx(1 / 255),
            "offset": 0.0,
        }
    ]
    assert info["suggested_scaling"] == "raw"
    assert info["scaling_reason"] == (
        "The model's input goes first through Rescaling(scale=0.003922) (layer 'preprocessed/to_unit'), which "
        "divides by 255 itself, so it is given raw 0–255 pixel values."
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_rescaling_to_minus_one_one_inside_a_nested_preprocessing_model_suggests_raw(
    tmp_path: Path, fmt: str
) -> None:
    import keras

    preprocessing = keras.Sequential(
        [
            keras.Input(shape=(4, 8, 8, 3)),
            layers().Resizing(8, 8, name="resize"),
            layers().Rescaling(1 / 127.5, offset=-1, name="to_symmetric"),
        ],
        name="preprocessing",
    )
    model = factories.conv3d_classifier_after(preprocessing, functional=True, name="outer")
    info = inspected(model, tmp_path, fmt)
    assert [(entry["layer"], entry["offset"]) for entry in info["input_preprocessing"]] == [
        ("outer/preprocessing/to_symmetric", -1.0)
    ]
    assert info["suggested_scaling"] == "raw"
    assert "divides by 127.5 itself" in info["scaling_reason"] and "offset=-1" in info["scaling_reason"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_time_distributed_rescaling_is_found(tmp_path: Path, fmt: str) -> None:
    wrapped = layers().TimeDistributed(layers().Rescaling(1 / 255, name="frame_scale"), name="per_frame")
    info = inspected(factories.conv3d_classifier_after(wrapped, functional=True), tmp_path, fmt)
    assert [entry["layer"] for entry in info["input_preprocessing"]] == ["preprocessed/per_frame/frame_scale"]
    assert info["suggested_scaling"] == "raw"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("mean", "variance", "suggested", "words"),
    [
        (IMAGENET_MEAN_255, IMAGENET_VARIANCE_255, "raw", "computed on 0–255 pixel values"),
        (IMAGENET_MEAN_UNIT, IMAGENET_VARIANCE_UNIT, "unit", "computed on values in [0, 1]"),
    ],
    ids=["mean_on_0_255", "mean_on_0_1"],
)
def test_normalization_with_explicit_statistics(
    tmp_path: Path, fmt: str, mean: list[float], variance: list[float], suggested: str, words: str
) -> None:
    norm = layers().Normalization(mean=mean, variance=variance, name="imagenet")
    info = inspected(factories.conv3d_classifier_after(norm), tmp_path, fmt)
    (entry,) = info["input_preprocessing"]
    assert entry["layer"] == "preprocessed/imagenet" and entry["class_name"] == "Normalization"
    assert entry["mean"] == pytest.approx(mean) and entry["variance"] == pytest.approx(variance)
    assert info["suggested_scaling"] == suggested
    assert words in info["scaling_reason"] and "'preprocessed/imagenet'" in info["scaling_reason"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("high", "suggested"), [(255.0, "raw"), (1.0, "unit")], ids=["on_0_255", "on_0_1"])
def test_adapted_normalization_statistics_are_read_from_the_weights(
    tmp_path: Path, fmt: str, high: float, suggested: str
) -> None:
    import keras

    norm = adapted_normalization(low=0.0, high=high)
    preprocessing = keras.Sequential([keras.Input(shape=(4, 8, 8, 3)), norm], name="preprocessing")
    info = inspected(
        factories.conv3d_classifier_after(preprocessing, functional=True, name="outer"), tmp_path, fmt
    )
    (entry,) = info["input_preprocessing"]
    assert entry["layer"] == "outer/preprocessing/norm"
    np.testing.assert_allclose(entry["mean"], np.asarray(norm.mean).reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(entry["variance"], np.asarray(norm.variance).reshape(-1), rtol=1e-6)
    assert info["suggested_scaling"] == suggested


def test_adapted_normalization_whose_weights_cannot_be_read_assumes_raw_and_says_so(tmp_path: Path) -> None:
    model = factories.conv3d_classifier_after(adapted_normalization(low=0.0, high=255.0))
    path = factories.save_model(model, directory=tmp_path, fmt="keras")
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    info = inspect_model(
        factories.write_keras_zip_with_config(directory=tmp_path, config=config)
    )  # empty weights
    assert (
        info["input_preprocessing"][0]["mean"] is None and info["input_preprocessing"][0]["variance"] is None
    )
    assert info["suggested_scaling"] == "raw"
    assert "statistics cannot be read" in info["scaling_reason"] and "assumed" in info["scaling_reason"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_rescaling_that_expects_unit_input_keeps_the_default(tmp_path: Path, fmt: str) -> None:
    info = inspected(
        factories.conv3d_classifier_after(layers().Rescaling(2.0, offset=-1.0, name="to_sym")), tmp_path, fmt
    )
    assert info["suggested_scaling"] == "unit"
    assert "expects values in [0, 1]" in info["scaling_reason"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_models_without_input_preprocessing_report_nothing(
    saved_models: dict, tmp_path: Path, fmt: str
) -> None:
    late = factories.conv3d_classifier_after(
        layers().Conv3D(3, 1, name="first_conv"), layers().Rescaling(1 / 255, name="too_late")
    )
    for info in (inspect_model(saved_models[("nested_submodel", fmt)]), inspected(late, tmp_path, fmt)):
        assert (info["input_preprocessing"], info["suggested_scaling"], info["scaling_reason"]) == (
            [],
            "unit",
            "",
        )


def test_cli_reports_the_preprocessing(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = factories.save_model(
        factories.conv3d_classifier_after(layers().Rescaling(1 / 255, name="to_unit")),
        directory=tmp_path,
        fmt="keras",
    )
    result = subprocess.run(
        [sys.executable, "-m", "gradcam3d", "inspect", str(path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (
        payload["suggested_scaling"] == "raw"
        and payload["input_preprocessing"][0]["class_name"] == "Rescaling"
    )
