"""The allowlist walk leaves no part of the config unchecked: compile_config, data markers, functions.

Keras compiles a nested model from its own compile_config while deserializing it, even when
loading with compile=False; it deserializes every value of a dict that has no "config" key
(a "__keras_tensor__" marker included); and its h5 loader decodes every dict of the JSON
before anything else. So hostile objects are planted in each of those places of a real saved
config, and inspection must refuse them, saying where they are.
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gradcam3d.errors import ModelRefused
from gradcam3d.modelcheck import inspect_model
from tests.engine import model_factories as factories

TFSM_LAYER = {
    "module": "keras.layers",
    "class_name": "TFSMLayer",
    "registered_name": None,
    "config": {"name": "tfsm", "filepath": "/srv/other-team/saved_model", "call_endpoint": "serve"},
}
LAMBDA_CODE = {
    "class_name": "__lambda__",
    "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None},
}
OS_SYSTEM = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
CUSTOM_METRIC = {
    "module": None,
    "class_name": "LeaveMarker",
    "registered_name": "Evil>LeaveMarker",
    "config": {"path": "/tmp/marker"},
}

# name -> (compile_config holding the payload, words the refusal must contain, refusal code)
HOSTILE_COMPILE_CONFIGS: dict[str, tuple[dict[str, Any], str, str]] = {
    "tfsm_layer_metric": (
        {"optimizer": "adam", "loss": "mse", "metrics": [TFSM_LAYER]},
        "TFSMLayer",
        "unsafe_layer",
    ),
    "lambda_loss": ({"optimizer": "adam", "loss": LAMBDA_CODE}, "lambda code", "lambda"),
    "os_function_loss": (
        {"optimizer": "adam", "loss": OS_SYSTEM},
        "'system' from module 'os'",
        "custom_object",
    ),
    "lambda_layer_metric": (
        {
            "loss": "mse",
            "metrics": [
                {
                    "module": "keras.layers",
                    "class_name": "Lambda",
                    "registered_name": None,
                    "config": {"name": "l", "function": LAMBDA_CODE},
                }
            ],
        },
        "Lambda layer",
        "lambda",
    ),
    "custom_registered_metric": (
        {"loss": "mse", "metrics": [CUSTOM_METRIC]},
        "Evil>LeaveMarker",
        "custom_object",
    ),
    "registered_name_as_string": ({"loss": "Evil>my_loss"}, "'Evil>my_loss'", "custom_object"),
    "class_from_foreign_module": (
        {
            "loss": "mse",
            "metrics": [
                {
                    "module": "evil.metrics",
                    "class_name": "Accuracy",
                    "registered_name": None,
                    "config": {"name": "acc"},
                }
            ],
        },
        "module 'evil.metrics'",
        "custom_object",
    ),
    "layer_used_as_metric": (
        {
            "loss": "mse",
            "metrics": [
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "registered_name": None,
                    "config": {"units": 1},
                }
            ],
        },
        "not a Keras optimizer, loss or metric module",
        "custom_object",
    ),
    "schedule_hiding_code": (
        {
            "optimizer": {
                "module": "keras.optimizers",
                "class_name": "Adam",
                "registered_name": None,
                "config": {
                    "learning_rate": {
                        "module": "keras.optimizers.schedules",
                        "class_name": "ExponentialDecay",
                        "registered_name": None,
                        "config": {"initial_learning_rate": OS_SYSTEM},
                    }
                },
            }
        },
        "'system' from module 'os'",
        "custom_object",
    ),
}


def nested_config(saved_models: dict) -> dict[str, Any]:
    with zipfile.ZipFile(saved_models[("nested_submodel", "keras")]) as archive:
        return json.loads(archive.read("config.json"))


def inner_block(config: dict[str, Any]) -> dict[str, Any]:
    return next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "inner_block")


def refusal_for(config: dict[str, Any], directory: Path) -> ModelRefused:
    with pytest.raises(ModelRefused) as caught:
        inspect_model(factories.write_keras_zip_with_config(directory=directory, config=config))
    return caught.value


@pytest.mark.parametrize("payload", sorted(HOSTILE_COMPILE_CONFIGS))
def test_hostile_compile_config_of_a_nested_model_is_refused_naming_the_model(
    saved_models: dict, tmp_path: Path, payload: str
) -> None:
    compile_config, words, code = HOSTILE_COMPILE_CONFIGS[payload]
    config = copy.deepcopy(nested_config(saved_models))
    inner_block(config)["compile_config"] = copy.deepcopy(compile_config)
    error = refusal_for(config, tmp_path)
    assert "compile_config (training settings) of 'outer_model/inner_block'" in str(error), str(error)
    assert words in str(error) and error.code == code


@pytest.mark.parametrize("place", ["root_model", "conv_layer", "plain_dict_in_a_layer_config"])
def test_hostile_compile_config_is_refused_wherever_it_is(
    saved_models: dict, tmp_path: Path, place: str
) -> None:
    config = copy.deepcopy(nested_config(saved_models))
    conv = next(
        layer
        for layer in inner_block(config)["config"]["layers"]
        if layer["config"].get("name") == "conv3d_2"
    )
    holder, where = {
        "root_model": (config, "'outer_model'"),
        "conv_layer": (conv, "'outer_model/inner_block/conv3d_2'"),
        "plain_dict_in_a_layer_config": (
            conv["config"].setdefault("extras", {}),
            "'outer_model/inner_block/conv3d_2'",
        ),
    }[place]
    holder["compile_config"] = {"loss": "mse", "metrics": [copy.deepcopy(TFSM_LAYER)]}
    error = refusal_for(config, tmp_path)
    assert f"compile_config (training settings) of {where}" in str(error) and "TFSMLayer" in str(error)


def _hide_in_marker_without_config(node: dict[str, Any]) -> None:
    # Without a "config" key Keras deserializes the marker dict value by value.
    node["kwargs"]["extra"] = {"class_name": "__keras_tensor__", "hidden": copy.deepcopy(CUSTOM_METRIC)}


def _hide_beside_marker_config(node: dict[str, Any]) -> None:
    node["args"][0]["hidden"] = copy.deepcopy(TFSM_LAYER)


def _hide_in_numpy_marker(node: dict[str, Any]) -> None:
    node["kwargs"]["extra"] = {
        "class_name": "__numpy__",
        "config": {"value": [1.0], "dtype": "float32", "hidden": copy.deepcopy(LAMBDA_CODE)},
    }


def _hide_beside_a_function(node: dict[str, Any]) -> None:
    node["kwargs"]["extra"] = {
        "module": "keras.activations",
        "class_name": "function",
        "config": "relu",
        "registered_name": copy.deepcopy(CUSTOM_METRIC),
    }


HIDING_PLACES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "marker_without_config": (_hide_in_marker_without_config, "Evil>LeaveMarker"),
    "beside_a_marker_config": (_hide_beside_marker_config, "TFSMLayer"),
    "inside_a_numpy_marker": (_hide_in_numpy_marker, "lambda code"),
    "beside_a_function": (_hide_beside_a_function, "Evil>LeaveMarker"),
}


@pytest.mark.parametrize("place", sorted(HIDING_PLACES))
def test_objects_hidden_in_data_markers_or_beside_functions_are_refused(
    saved_models: dict, tmp_path: Path, place: str
) -> None:
    hide, words = HIDING_PLACES[place]
    config = copy.deepcopy(nested_config(saved_models))
    pooling = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "MaxPooling3D")
    hide(pooling["inbound_nodes"][0])
    error = refusal_for(config, tmp_path)
    assert words in str(error) and pooling["config"]["name"] in str(error), str(error)


def test_compile_configs_keras_writes_are_accepted_at_every_depth(tmp_path: Path) -> None:
    # Control: a backbone compiled with an optimizer schedule, loss and metric objects, built-in
    # metric names and functions, used inside a compiled model.
    import keras

    backbone = factories.nested_submodel().get_layer("inner_block")
    backbone.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy", keras.metrics.AUC(), keras.metrics.sparse_top_k_categorical_accuracy],
    )
    inputs = keras.Input(shape=factories.SMALL_INPUT_SHAPE)
    pooled = keras.layers.GlobalAveragePooling3D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled), name="uses_backbone")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["acc"])
    path = factories.save_model(model, directory=tmp_path, fmt="keras")
    with zipfile.ZipFile(path) as archive:
        saved = json.loads(archive.read("config.json"))
    assert "compile_config" in saved and inner_block(saved)["compile_config"]
    assert inspect_model(path)["conv3d_layers"] == [
        "uses_backbone/inner_block/conv3d_1",
        "uses_backbone/inner_block/conv3d_2",
    ]
