"""`inspect_model` / `python -m gradcam3d inspect`: describe good models, refuse bad files.

Every file here is real: models built with Keras and saved with model.save, or bad files
written byte by byte (model_factories). Refusals are checked for the reason and, where a layer
is at fault, for that layer's full path.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from gradcam3d.errors import ModelRefused
from gradcam3d.modelcheck import inspect_model
from tests.engine import model_factories as factories

REPO_ROOT = Path(__file__).resolve().parents[2]
FORMATS = ("h5", "keras")


def refusal(path: Path, **kwargs: Any) -> ModelRefused:
    with pytest.raises(ModelRefused) as caught:
        inspect_model(path, **kwargs)
    return caught.value


# --------------------------------------------------------------------------------------------
# Accepted architectures


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("architecture", sorted(factories.GOOD_ARCHITECTURES))
def test_inspect_reports_shape_classes_and_every_conv3d_path(
    saved_models: dict[tuple[str, str], Path], built_models: dict[str, Any], architecture: str, fmt: str
) -> None:
    _, conv_paths, input_shape, num_classes = factories.GOOD_ARCHITECTURES[architecture]
    info = inspect_model(saved_models[(architecture, fmt)])
    model = built_models[architecture]
    assert info["format"] == fmt
    assert info["input_shape"] == input_shape
    assert info["num_classes"] == num_classes
    assert info["conv3d_layers"] == conv_paths
    assert info["output_activation"] == "softmax"
    assert info["model_class"] == (
        "Sequential" if "sequential" in architecture or architecture == "grayscale" else "Functional"
    )
    assert info["keras_version"].split(".")[0] == "3"
    assert info["layer_count"] == _count_layers(model)


def _count_layers(model: Any) -> int:
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        total += 1
        if isinstance(layer, keras.Model):
            total += _count_layers(layer)
    return total


def test_nested_conv3d_layers_come_in_execution_order_with_full_paths(saved_models: dict) -> None:
    info = inspect_model(saved_models[("nested_submodel", "keras")])
    assert info["conv3d_layers"] == [
        "outer_model/inner_block/conv3d_1",
        "outer_model/inner_block/conv3d_2",
        "outer_model/conv3d_3",
    ]


def test_format_comes_from_magic_bytes_not_the_file_name(saved_models: dict, tmp_path: Path) -> None:
    h5_named_keras = tmp_path / "really_h5.keras"
    shutil.copyfile(saved_models[("sequential_with_input", "h5")], h5_named_keras)
    zip_named_h5 = tmp_path / "really_zip.h5"
    shutil.copyfile(saved_models[("sequential_with_input", "keras")], zip_named_h5)
    no_suffix = tmp_path / "upload_0f3a"
    shutil.copyfile(saved_models[("sequential_with_input", "h5")], no_suffix)
    assert inspect_model(h5_named_keras)["format"] == "h5"
    assert inspect_model(zip_named_h5)["format"] == "keras"
    assert inspect_model(no_suffix)["format"] == "h5"


@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`")
def test_sequential_with_input_shape_argument_on_first_layer_is_accepted(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential(
        [
            keras.layers.Conv3D(2, 3, input_shape=(6, 12, 12, 3), name="conv_a"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ],
        name="legacy_style",
    )
    for fmt in FORMATS:
        info = inspect_model(factories.save_model(model, directory=tmp_path, fmt=fmt))
        assert (info["input_shape"], info["num_classes"], info["conv3d_layers"]) == (
            [6, 12, 12, 3],
            4,
            ["legacy_style/conv_a"],
        )


@pytest.mark.parametrize("final_activation", ["sigmoid", "linear"])
def test_output_activation_is_reported(tmp_path: Path, final_activation: str) -> None:
    model = factories.conv3d_model_with_input_shape(
        input_shape=(4, 8, 8, 1), final_activation=final_activation
    )
    info = inspect_model(factories.save_model(model, directory=tmp_path, fmt="keras"))
    assert info["output_activation"] == final_activation
    assert info["input_shape"] == [4, 8, 8, 1]


# --------------------------------------------------------------------------------------------
# Unsafe content


@pytest.mark.parametrize("fmt", FORMATS)
def test_lambda_layer_is_refused_and_its_code_never_runs(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "lambda_ran.txt"
    path = factories.write_lambda_model(directory=tmp_path, marker=marker, fmt=fmt)
    assert not marker.exists()
    error = refusal(path)
    assert "lambda_model/evil_lambda" in str(error) and "Lambda" in str(error)
    assert error.code == "lambda"
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_custom_registered_layer_in_nested_submodel_is_refused_with_its_path(
    tmp_path: Path, fmt: str
) -> None:
    error = refusal(factories.write_custom_layer_model(directory=tmp_path, fmt=fmt))
    assert "custom_model/inner_block/double_it" in str(error)
    assert "custom" in str(error)
    assert error.code == "custom_object"


def _nested_config(saved_models: dict) -> dict[str, Any]:
    with zipfile.ZipFile(saved_models[("nested_submodel", "keras")]) as archive:
        return json.loads(archive.read("config.json"))


def _inner_conv(config: dict[str, Any], name: str = "conv3d_2") -> dict[str, Any]:
    inner_block = next(
        layer for layer in config["config"]["layers"] if layer["config"]["name"] == "inner_block"
    )
    return next(layer for layer in inner_block["config"]["layers"] if layer["config"].get("name") == name)


HOSTILE_EDITS = {
    "non_keras_module": (lambda layer: layer.update(module="evil.payload"), "module 'evil.payload'"),
    "keras_internal_module": (
        lambda layer: layer.update(module="keras.src.saving.serialization_lib"),
        "module 'keras.src.saving.serialization_lib'",
    ),
    "registered_name": (lambda layer: layer.update(registered_name="Evil>Conv3D"), "Evil>Conv3D"),
    "tfsm_layer": (lambda layer: layer.update(class_name="TFSMLayer"), "TFSMLayer"),
    "lambda_class": (lambda layer: layer.update(class_name="Lambda"), "Lambda"),
    "unknown_class": (lambda layer: layer.update(class_name="FancyAttention3D"), "FancyAttention3D"),
    "function_from_os": (
        lambda layer: layer["config"].update(
            activation={"module": "os", "class_name": "function", "config": "system", "registered_name": None}
        ),
        "'system' from module 'os'",
    ),
    "custom_activation_name": (lambda layer: layer["config"].update(activation="my_swish"), "my_swish"),
    "lambda_initializer": (
        lambda layer: layer["config"].update(
            kernel_initializer={"class_name": "__lambda__", "config": {"code": "AAAA"}}
        ),
        "lambda",
    ),
    "custom_initializer_module": (
        lambda layer: layer["config"]["kernel_initializer"].update(module="mypackage.inits"),
        "mypackage.inits",
    ),
}


@pytest.mark.parametrize("edit_name", sorted(HOSTILE_EDITS))
def test_hostile_config_deep_in_a_nested_submodel_is_refused_naming_the_layer(
    saved_models: dict, tmp_path: Path, edit_name: str
) -> None:
    edit, expected_words = HOSTILE_EDITS[edit_name]
    config = copy.deepcopy(_nested_config(saved_models))
    edit(_inner_conv(config))
    error = refusal(factories.write_keras_zip_with_config(directory=tmp_path, config=config))
    assert "outer_model/inner_block/conv3d_2" in str(error)
    assert expected_words in str(error)


def test_lambda_wrapped_in_time_distributed_is_refused_with_wrapped_path(
    saved_models: dict, tmp_path: Path
) -> None:
    config = copy.deepcopy(_nested_config(saved_models))
    layers = config["config"]["layers"]
    wrapper = {
        "module": "keras.layers",
        "class_name": "TimeDistributed",
        "registered_name": None,
        "config": {
            "name": "per_frame",
            "layer": {
                "module": "keras.layers",
                "class_name": "Lambda",
                "registered_name": None,
                "config": {"name": "hidden_lambda", "function": "x"},
            },
        },
        "name": "per_frame",
        "inbound_nodes": [],
    }
    layers.insert(2, wrapper)
    error = refusal(factories.write_keras_zip_with_config(directory=tmp_path, config=config))
    assert "outer_model/per_frame/hidden_lambda" in str(error) and "Lambda" in str(error)


def test_the_unmodified_crafted_config_is_accepted(saved_models: dict, tmp_path: Path) -> None:
    # Control for the hostile-config tests: the same zip writer with the untouched config passes.
    path = factories.write_keras_zip_with_config(directory=tmp_path, config=_nested_config(saved_models))
    assert inspect_model(path)["conv3d_layers"][1] == "outer_model/inner_block/conv3d_2"


# --------------------------------------------------------------------------------------------
# Broken or wrong files


def test_zero_byte_file_is_refused_as_empty(tmp_path: Path) -> None:
    error = refusal(factories.write_zero_byte(directory=tmp_path))
    assert error.code == "empty" and "empty" in str(error)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file_is_refused_as_truncated_or_corrupted(
    saved_models: dict, tmp_path: Path, fmt: str
) -> None:
    error = refusal(
        factories.write_truncated(source=saved_models[("nested_submodel", fmt)], directory=tmp_path)
    )
    assert error.code == "corrupted" and "truncated or corrupted" in str(error)


def test_random_bytes_are_not_a_keras_model(tmp_path: Path) -> None:
    error = refusal(factories.write_random_bytes(directory=tmp_path))
    assert error.code == "not_a_model" and "neither an HDF5" in str(error)


def test_zip_without_config_json_is_not_a_keras_model(tmp_path: Path) -> None:
    error = refusal(factories.write_zip_without_config(directory=tmp_path))
    assert error.code == "not_a_model" and "config.json" in str(error)


def test_zip_claiming_a_huge_uncompressed_size_is_refused_as_zip_bomb(tmp_path: Path) -> None:
    path = factories.write_zip_bomb(directory=tmp_path)
    assert path.stat().st_size < 10_000
    error = refusal(path)
    assert error.code == "zip_bomb" and "64.0 GiB" in str(error)


def test_zip_with_thousands_of_entries_is_refused_as_zip_bomb(tmp_path: Path) -> None:
    error = refusal(factories.write_zip_with_many_entries(directory=tmp_path))
    assert error.code == "zip_bomb" and "5001 entries" in str(error)


def test_hdf5_that_is_not_a_keras_model_is_refused(tmp_path: Path) -> None:
    error = refusal(factories.write_non_keras_hdf5(directory=tmp_path))
    assert error.code == "not_a_model" and "model_config" in str(error)


def test_weights_only_file_is_refused_even_when_renamed(tmp_path: Path) -> None:
    path = factories.write_weights_only(directory=tmp_path)
    renamed = tmp_path / "model.h5"
    shutil.copyfile(path, renamed)
    for candidate in (path, renamed):
        error = refusal(candidate)
        assert error.code == "weights_only" and "only weights" in str(error)


def test_config_json_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    error = refusal(factories.write_keras_zip_with_config(directory=tmp_path, config={"foo": 1}))
    assert error.code == "not_a_model"
    bad_json = tmp_path / "bad_json.keras"
    with zipfile.ZipFile(bad_json, "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("model.weights.h5", b"")
    assert refusal(bad_json).code == "corrupted"


def test_file_over_max_bytes_is_refused(saved_models: dict) -> None:
    path = saved_models[("sequential_with_input", "h5")]
    error = refusal(path, max_bytes=path.stat().st_size - 1)
    assert error.code == "too_large"
    assert inspect_model(path, max_bytes=path.stat().st_size)["format"] == "h5"


# --------------------------------------------------------------------------------------------
# Architectures the platform cannot explain


@pytest.mark.parametrize("fmt", FORMATS)
def test_2d_image_model_is_refused_for_its_4d_input(tmp_path: Path, fmt: str) -> None:
    error = refusal(factories.write_image_2d_model(directory=tmp_path, fmt=fmt))
    assert error.code == "bad_input_shape" and "2D image model" in str(error) and "5-D" in str(error)


@pytest.mark.parametrize(
    ("input_shape", "expected_words"),
    [
        ((4096, 32, 32, 3), "absurd"),
        ((8, 4096, 32, 3), "absurd"),
        ((8, 32, 3000, 3), "absurd"),
        ((None, 32, 32, 3), "None"),
        ((8, None, None, 3), "None"),
        ((8, 32, 32, 5), "5 channels"),
        ((1024, 512, 512, 3), "values per clip"),
    ],
)
def test_absurd_or_undefined_input_shape_is_refused(
    tmp_path: Path, input_shape: tuple, expected_words: str
) -> None:
    error = refusal(factories.write_absurd_input_model(directory=tmp_path, input_shape=input_shape))
    assert error.code == "bad_input_shape" and expected_words in str(error)


def test_model_without_conv3d_is_refused(tmp_path: Path) -> None:
    error = refusal(factories.write_no_conv3d_model(directory=tmp_path))
    assert error.code == "no_conv3d" and "Conv3D" in str(error)


def test_model_with_a_single_output_unit_is_refused(tmp_path: Path) -> None:
    error = refusal(factories.write_single_output_model(directory=tmp_path))
    assert error.code == "bad_output" and "(batch, 1)" in str(error)


# --------------------------------------------------------------------------------------------
# Command line and import hygiene


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gradcam3d", "inspect", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_inspect_prints_json(saved_models: dict) -> None:
    result = _run_cli(str(saved_models[("nested_submodel", "h5")]))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["ok"] is True
    assert payload["conv3d_layers"][0] == "outer_model/inner_block/conv3d_1"
    assert payload["input_shape"] == [8, 32, 32, 3]


def test_cli_refusal_exits_2_with_one_line_on_stderr(tmp_path: Path) -> None:
    marker = tmp_path / "lambda_ran.txt"
    result = _run_cli(str(factories.write_lambda_model(directory=tmp_path, marker=marker, fmt="h5")))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "evil_lambda" in result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload == {"ok": False, "error": result.stderr.strip(), "code": "lambda"}
    assert not marker.exists()


def test_cli_max_bytes_option(saved_models: dict) -> None:
    result = _run_cli(str(saved_models[("grayscale", "keras")]), "--max-bytes", "100")
    assert result.returncode == 2 and "over the limit" in result.stderr


def test_inspecting_and_importing_loading_never_import_tensorflow(saved_models: dict) -> None:
    code = (
        "import sys; from gradcam3d.modelcheck import inspect_model; import gradcam3d.loading; "
        f"inspect_model({str(saved_models[('nested_submodel', 'keras')])!r}); "
        f"inspect_model({str(saved_models[('nested_submodel', 'h5')])!r}); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _keras2_layer(class_name: str, name: str, inbound: str | None, **config: Any) -> dict[str, Any]:
    return {
        "class_name": class_name,
        "config": {"name": name, "trainable": True, "dtype": "float32", **config},
        "name": name,
        "inbound_nodes": [[[inbound, 0, 0, {}]]] if inbound else [],
    }


def test_keras2_style_h5_config_is_understood(tmp_path: Path) -> None:
    # Models from the original tool were tf.keras 2 .h5 files: "Model" class, batch_input_shape,
    # nested-list inbound nodes, no "module" keys.
    import h5py

    config = {
        "class_name": "Model",
        "config": {
            "name": "c3d",
            "layers": [
                _keras2_layer("InputLayer", "clip", None, batch_input_shape=[None, 16, 112, 112, 3]),
                _keras2_layer("Conv3D", "conv1", "clip", filters=8, kernel_size=[3, 3, 3], activation="relu"),
                _keras2_layer("GlobalAveragePooling3D", "pool", "conv1"),
                _keras2_layer("Dense", "fc", "pool", units=5, activation="linear"),
                _keras2_layer("Activation", "prob", "fc", activation="softmax"),
            ],
            "input_layers": [["clip", 0, 0]],
            "output_layers": [["prob", 0, 0]],
        },
    }
    path = tmp_path / "keras2.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = "2.9.0"
        handle.create_group("model_weights")
    info = inspect_model(path)
    assert (
        info["input_shape"],
        info["num_classes"],
        info["conv3d_layers"],
        info["output_activation"],
        info["keras_version"],
    ) == ([16, 112, 112, 3], 5, ["c3d/conv1"], "softmax", "2.9.0")
