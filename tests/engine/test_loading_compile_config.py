"""Keras never deserializes a nested compile_config: load_model_safely loads a sanitized copy.

A metric class registered in this process writes a marker file when Keras constructs it, so
the tests can see exactly which compile_configs Keras deserializes. The first tests pin what
the installed Keras does (why the copy is needed, and why the root's is left to Keras); the
others show load_model_safely never lets Keras reach a nested one, even if inspection missed
it, while models whose backbone was compiled still load and predict as saved.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # see gradcam3d/loading.py

import h5py  # noqa: E402
import keras  # noqa: E402

from gradcam3d import loading  # noqa: E402
from gradcam3d.loading import load_model_safely  # noqa: E402
from tests.engine import model_factories as factories  # noqa: E402


@keras.saving.register_keras_serializable(package="GradcamTests", name="LeaveMarker")
class LeaveMarker(keras.metrics.Mean):
    """A metric that leaves a file behind when it is constructed."""

    def __init__(self, path: str = "", **kwargs: Any) -> None:
        if path:
            Path(path).write_text("Keras deserialized this compile_config")
        super().__init__(**kwargs)


def marker_compile_config(marker: Path) -> dict[str, Any]:
    metric = {
        "module": None,
        "class_name": "LeaveMarker",
        "registered_name": "GradcamTests>LeaveMarker",
        "config": {"path": str(marker), "name": "leave_marker"},
    }
    return {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": [metric]}


def with_compile_config(
    source: Path,
    directory: Path,
    *,
    compile_config: dict[str, Any],
    nested: bool,
    add_module_key: bool = False,
) -> Path:
    """A copy of a saved nested_submodel file with `compile_config` on inner_block or the root."""
    target = directory / f"{'nested' if nested else 'root'}_compile{source.suffix}"
    if source.suffix == ".keras":
        with zipfile.ZipFile(source) as original:
            config = json.loads(original.read("config.json"))
            _place(config, compile_config, nested=nested, add_module_key=add_module_key)
            with zipfile.ZipFile(target, "w") as written:
                for info in original.infolist():
                    data = json.dumps(config) if info.filename == "config.json" else original.read(info)
                    written.writestr(info.filename, data)
        return target
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        _place(config, compile_config, nested=nested, add_module_key=add_module_key)
        handle.attrs["model_config"] = json.dumps(config).encode()
    return target


def _place(
    config: dict[str, Any], compile_config: dict[str, Any], *, nested: bool, add_module_key: bool
) -> None:
    holder = config
    if nested:
        holder = next(
            layer for layer in config["config"]["layers"] if layer["config"]["name"] == "inner_block"
        )
        if add_module_key:
            holder["module"] = "keras.src.models.functional"
    holder["compile_config"] = copy.deepcopy(compile_config)


# --------------------------------------------------------------------------------------------
# What the installed Keras does


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # Keras' own, expected here
@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_keras_compiles_a_nested_compile_config_even_with_compile_false(
    saved_models: dict, tmp_path: Path, fmt: str
) -> None:
    marker = tmp_path / "marker.txt"
    # The h5 loader reaches it for a nested layer with a "module" key (Keras' own h5 writer
    # leaves that key out, a crafted file need not).
    path = with_compile_config(
        saved_models[("nested_submodel", fmt)],
        tmp_path,
        compile_config=marker_compile_config(marker),
        nested=True,
        add_module_key=True,
    )
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert marker.exists() and model.get_layer("inner_block").compiled


def test_keras_h5_loader_ignores_a_nested_compile_config_without_a_module_key(
    saved_models: dict, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.txt"
    path = with_compile_config(
        saved_models[("nested_submodel", "h5")],
        tmp_path,
        compile_config=marker_compile_config(marker),
        nested=True,
    )
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert not marker.exists() and not model.get_layer("inner_block").compiled


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_keras_drops_the_root_compile_config_when_loading_with_compile_false(
    saved_models: dict, tmp_path: Path, fmt: str
) -> None:
    # Why load_model_safely copies a file only when a compile_config sits below the root.
    marker = tmp_path / "marker.txt"
    path = with_compile_config(
        saved_models[("nested_submodel", fmt)],
        tmp_path,
        compile_config=marker_compile_config(marker),
        nested=False,
    )
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert not marker.exists() and not model.compiled


# --------------------------------------------------------------------------------------------
# load_model_safely


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_nested_compile_config_never_reaches_keras_even_if_inspection_missed_it(
    saved_models: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    marker = tmp_path / "marker.txt"
    source = saved_models[("nested_submodel", fmt)]
    path = with_compile_config(
        source, tmp_path, compile_config=marker_compile_config(marker), nested=True, add_module_key=True
    )
    original_bytes = hashlib.sha256(path.read_bytes()).hexdigest()
    # Inspection refuses this custom metric; pretend it had not, to test the second defence.
    monkeypatch.setattr(loading, "inspect_model", lambda *args, **kwargs: {"format": fmt})
    model = load_model_safely(path)
    assert not marker.exists()
    assert not model.get_layer("inner_block").compiled
    x = np.random.default_rng(0).random((1, *factories.SMALL_INPUT_SHAPE), dtype=np.float32)
    np.testing.assert_allclose(model(x).numpy(), load_model_safely(source)(x).numpy(), atol=1e-6)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == original_bytes  # the upload is untouched


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_model_with_a_compiled_backbone_loads_and_predicts_like_the_saved_model(
    tmp_path: Path, fmt: str
) -> None:
    built = factories.nested_submodel()
    backbone = built.get_layer("inner_block")
    backbone.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy", keras.metrics.AUC()],
    )
    built.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["acc"])
    path = factories.save_model(built, directory=tmp_path, fmt=fmt)
    loaded = load_model_safely(path)
    x = np.random.default_rng(1).random((2, *factories.SMALL_INPUT_SHAPE), dtype=np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), built(x).numpy(), atol=1e-6)
    assert not loaded.compiled and not loaded.get_layer("inner_block").compiled


def test_keras_reads_the_upload_itself_when_there_is_no_nested_compile_config(
    saved_models: dict, tmp_path: Path
) -> None:
    path = saved_models[("nested_submodel", "keras")]
    assert loading._keras_load_path(model_path=path, model_format="keras", scratch=tmp_path) == path
    renamed = tmp_path / "upload.bin"
    shutil.copyfile(path, renamed)
    linked = loading._keras_load_path(model_path=renamed, model_format="keras", scratch=tmp_path)
    assert linked.suffix == ".keras" and linked.resolve() == renamed.resolve()
