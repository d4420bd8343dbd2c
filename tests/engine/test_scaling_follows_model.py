"""The preprocessing scaling follows the model: a model whose first layer is Rescaling(1/255)
gets 0-255 values when the caller leaves the scaling to it (nothing, None or "auto"), never
values divided twice; an explicit scaling from the caller is kept. The manifest says which
scaling was used, who chose it, why, and the range of values the model really received.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcam3d.preprocess import PreprocessParams, choose_scaling, preprocess_video
from tests.engine import scaling_factories as sf


@pytest.fixture(scope="module")
def rescaling_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    folder = tmp_path_factory.mktemp("scaling")
    return {
        "model": sf.save(sf.rescaling_model(), directory=folder),
        "video": sf.bright_square_video(folder / "square.mp4"),
    }


def analyse(inputs: dict[str, Path], out: Path, preprocess: dict[str, Any] | None) -> dict[str, Any]:
    from gradcam3d.pipeline import run_analysis

    params = {} if preprocess is None else {"preprocess": preprocess}
    run_analysis(inputs["model"], inputs["video"], params, out)
    return json.loads((out / "manifest.json").read_text())


def probabilities_of(model_path: Path, x: np.ndarray) -> np.ndarray:
    import keras

    model = keras.models.load_model(model_path, compile=False)
    return np.asarray(model.predict(x, verbose=0)[0], dtype=np.float64)


def test_choose_scaling_keeps_the_callers_choice_and_otherwise_follows_the_inspection() -> None:
    rescales = {
        "suggested_scaling": "raw",
        "scaling_reason": "Its first layer, Rescaling(1/255), divides by 255 itself.",
    }
    for requested in (None, "auto"):
        chosen = choose_scaling(requested=requested, inspection=rescales)
        assert chosen == {
            "name": "raw",
            "source": "model",
            "reason": rescales["scaling_reason"],
            "suggested": "raw",
        }
    kept = choose_scaling(requested="unit", inspection=rescales)
    assert (kept["name"], kept["source"], kept["suggested"]) == ("unit", "caller", "raw")
    assert "'raw'" in kept["reason"] and rescales["scaling_reason"] in kept["reason"]
    agreeing = choose_scaling(requested="raw", inspection=rescales)
    assert (agreeing["source"], agreeing["reason"]) == ("caller", "Chosen by the caller.")
    # A plain model, and an inspection that says nothing about scaling: [0, 1], with a reason.
    for plain in ({"suggested_scaling": "unit", "scaling_reason": ""}, {}):
        chosen = choose_scaling(requested=None, inspection=plain)
        assert (chosen["name"], chosen["source"]) == ("unit", "model")
        assert "[0, 1]" in chosen["reason"] and chosen["reason"].endswith(".")
    with pytest.raises(ValueError):
        choose_scaling(requested=None, inspection={"suggested_scaling": "twice"})


@pytest.mark.parametrize("preprocess", [None, {"scaling": "auto"}], ids=["no scaling given", "auto"])
def test_a_model_that_rescales_its_own_input_receives_0_to_255_when_the_scaling_is_left_to_it(
    rescaling_inputs: dict[str, Path],
    tmp_path: Path,
    preprocess: dict[str, Any] | None,
) -> None:
    manifest = analyse(rescaling_inputs, tmp_path / "auto", preprocess)
    scaling = manifest["preprocess"]["scaling"]
    assert (scaling["name"], scaling["source"], scaling["suggested"]) == ("raw", "model", "raw")
    assert scaling["reason"] and scaling["reason"].endswith(".")
    low, high = scaling["input_range"]
    assert 0.0 <= low < high <= 255.0 and high > 1.0
    # The name, not "auto", is recorded: the params alone re-run the same analysis.
    assert manifest["params"]["preprocess"]["scaling"] == "raw"
    # The prediction is the model's on 0-255 values, not on values divided by 255 twice.
    shape = tuple(manifest["model"]["input_shape"])
    raw = preprocess_video(
        rescaling_inputs["video"], input_shape=shape, params=PreprocessParams(scaling="raw")
    ).x
    unit = preprocess_video(rescaling_inputs["video"], input_shape=shape).x
    assert [float(raw.min()), float(raw.max())] == scaling["input_range"]
    probabilities = np.asarray(manifest["prediction"]["probabilities"])
    np.testing.assert_allclose(probabilities, probabilities_of(rescaling_inputs["model"], raw), atol=1e-5)
    assert not np.allclose(probabilities, probabilities_of(rescaling_inputs["model"], unit), atol=1e-3)


def test_an_explicit_scaling_is_kept_and_the_manifest_says_the_model_suggests_another(
    rescaling_inputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    manifest = analyse(rescaling_inputs, tmp_path / "unit", {"scaling": "unit"})
    scaling = manifest["preprocess"]["scaling"]
    assert (scaling["name"], scaling["source"]) == ("unit", "caller")
    assert manifest["params"]["preprocess"]["scaling"] == "unit"
    low, high = scaling["input_range"]
    assert 0.0 <= low < high <= 1.0
    # The caller overrode the model: whoever reads the result can see it.
    assert scaling["suggested"] == "raw" and "'raw'" in scaling["reason"]
