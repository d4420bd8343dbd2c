"""`load_model_safely` and `build_probe` on real saved models.

The probe's activations and logits are checked against two independent references: the loaded
model's own output, and gradients computed in the test by running the model's layers by hand
(a chain of leaf layers, nested sub-models flattened) or, for the non-chain residual model, by
the textbook `keras.Model(model.inputs, [layer.output, ...])` on the loaded Functional model.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # see gradcam3d/loading.py

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from gradcam3d.errors import ModelRefused, Refusal  # noqa: E402
from gradcam3d.loading import (  # noqa: E402
    LOGITS_FROM_ACTIVATION_INPUT,
    LOGITS_FROM_DENSE_PREACTIVATION,
    LOGITS_FROM_MODEL_OUTPUT,
    build_probe,
    conv3d_layer_paths,
    load_model_safely,
)
from tests.engine import model_factories as factories  # noqa: E402

FORMATS = ("h5", "keras")
ARCHITECTURES = sorted(factories.GOOD_ARCHITECTURES)


def clip_for(shape: list[int], *, seed: int = 7) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).random((1, *shape), dtype=np.float32))


def relative_error(actual: Any, expected: Any) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


# --------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_loaded_model_predicts_like_the_model_that_was_saved(
    saved_models: dict, built_models: dict, architecture: str, fmt: str
) -> None:
    _, conv_paths, shape, _ = factories.GOOD_ARCHITECTURES[architecture]
    loaded = load_model_safely(saved_models[(architecture, fmt)])
    x = clip_for(shape)
    np.testing.assert_allclose(loaded(x).numpy(), built_models[architecture](x).numpy(), atol=1e-6)
    assert conv3d_layer_paths(loaded) == conv_paths


def test_loader_follows_magic_bytes_whatever_the_name(saved_models: dict, tmp_path: Path) -> None:
    x = clip_for([8, 32, 32, 3])
    expected = load_model_safely(saved_models[("nested_submodel", "h5")])(x).numpy()
    for source_fmt, name in (
        ("h5", "upload.keras"),
        ("h5", "upload"),
        ("keras", "upload.h5"),
        ("keras", "x.bin"),
    ):
        target = tmp_path / name
        shutil.copyfile(saved_models[("nested_submodel", source_fmt)], target)
        np.testing.assert_allclose(load_model_safely(target)(x).numpy(), expected, atol=1e-6)
        target.unlink()


@pytest.mark.parametrize("fmt", FORMATS)
def test_lambda_model_is_refused_before_keras_runs_its_code(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "lambda_ran.txt"
    path = factories.write_lambda_model(directory=tmp_path, marker=marker, fmt=fmt)
    with pytest.raises(ModelRefused, match="evil_lambda"):
        load_model_safely(path)
    assert not marker.exists()
    # Control: the file's Lambda is live code. Loading it unsafely and running it leaves the
    # marker, so the absence above means our refusal stopped it.
    unsafe = keras.saving.load_model(path, safe_mode=False, compile=False)
    unsafe(clip_for([8, 32, 32, 3]))
    assert marker.exists()


def test_custom_layer_is_refused_even_when_the_class_is_registered_in_process(tmp_path: Path) -> None:
    # The factory registered DoubleIt in this process, so Keras itself would load the file.
    path = factories.write_custom_layer_model(directory=tmp_path, fmt="keras")
    assert keras.saving.load_model(path, compile=False) is not None
    with pytest.raises(ModelRefused, match="custom_model/inner_block/double_it"):
        load_model_safely(path)


def test_corrupted_weights_behind_a_valid_config_are_refused_cleanly(
    saved_models: dict, tmp_path: Path
) -> None:
    source = saved_models[("sequential_with_input", "keras")]
    broken = tmp_path / "broken_weights.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(broken, "w") as copy:
        for name in ("config.json", "metadata.json"):
            copy.writestr(name, original.read(name))
        copy.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 200)
    with pytest.raises(ModelRefused) as caught:
        load_model_safely(broken)
    assert caught.value.code == "load_failed"


def test_refusals_from_inspection_reach_load_model_safely(tmp_path: Path) -> None:
    with pytest.raises(ModelRefused) as caught:
        load_model_safely(factories.write_image_2d_model(directory=tmp_path))
    assert caught.value.code == "bad_input_shape"


# --------------------------------------------------------------------------------------------
# Probe: references


def _leaf_chain(model: Any, prefix: str) -> list[tuple[str, Any]]:
    """The model as a chain of (path, leaf layer), nested sub-models flattened in order."""
    chain: list[tuple[str, Any]] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{prefix}/{layer.name}"
        chain.extend(_leaf_chain(layer, path) if isinstance(layer, keras.Model) else [(path, layer)])
    return chain


def _chain_reference(
    model: Any, x: tf.Tensor, target: str, class_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activation, logits, d logit[class] / d activation) by running a layer chain by hand."""
    chain = _leaf_chain(model, model.name)
    index = [path for path, _ in chain].index(target)
    value = x
    for _, layer in chain[: index + 1]:
        value = layer(value)
    activation = tf.identity(value)
    with tf.GradientTape() as tape:
        tape.watch(activation)
        value = activation
        for _, layer in chain[index + 1 : -1]:
            value = layer(value)
        dense = chain[-1][1]
        assert isinstance(dense, keras.layers.Dense)
        logits = tf.matmul(value, dense.kernel) + dense.bias  # the definition of the Dense logits
        score = logits[:, class_index]
    return activation.numpy(), logits.numpy(), tape.gradient(score, activation).numpy()


def _functional_reference(
    model: Any, x: tf.Tensor, target: str, class_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    layer = model.get_layer(target.split("/", 1)[1])
    scores = model.get_layer("scores")  # linear Dense before the separate Softmax layer
    extractor = keras.Model(model.inputs, [layer.output, scores.output])
    with tf.GradientTape() as tape:
        activation, logits = extractor(x, training=False)
        score = logits[:, class_index]
    return activation.numpy(), logits.numpy(), tape.gradient(score, activation).numpy()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_probe_activations_logits_and_gradients_match_independent_references(
    saved_models: dict, architecture: str, fmt: str
) -> None:
    _, conv_paths, shape, num_classes = factories.GOOD_ARCHITECTURES[architecture]
    model = load_model_safely(saved_models[(architecture, fmt)])
    probe = build_probe(model, conv_paths)
    x = clip_for(shape)
    reference = _functional_reference if architecture == "functional_bn_residual" else _chain_reference
    for class_index in (0, num_classes - 1):
        with tf.GradientTape() as tape:
            activations, logits = probe(x)
            score = logits[:, class_index]
        gradients = tape.gradient(score, activations)
        assert logits.shape == (1, num_classes)
        for path, activation, gradient in zip(conv_paths, activations, gradients):
            expected_activation, expected_logits, expected_gradient = reference(model, x, path, class_index)
            assert gradient is not None, path
            assert np.abs(expected_gradient).max() > 0, path  # the reference must be informative
            assert relative_error(activation, expected_activation) < 1e-5, path
            assert relative_error(logits, expected_logits) < 1e-5, path
            assert relative_error(gradient, expected_gradient) < 1e-5, path


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_probe_probabilities_equal_the_model_output_and_logits_are_pre_softmax(
    saved_models: dict, architecture: str
) -> None:
    _, conv_paths, shape, _ = factories.GOOD_ARCHITECTURES[architecture]
    model = load_model_safely(saved_models[(architecture, "keras")])
    probe = build_probe(model, conv_paths[-1:])
    x = clip_for(shape, seed=11)
    result = probe.forward(x)
    model_output = model(x).numpy()
    np.testing.assert_allclose(probe.probabilities(result.logits).numpy(), model_output, atol=1e-5)
    np.testing.assert_allclose(result.outputs.numpy(), model_output, atol=1e-6)
    # Logits are the softmax's input: log p differs from them by one constant per sample, and
    # they are not the probabilities themselves.
    shift = np.log(model_output) - result.logits.numpy()
    np.testing.assert_allclose(shift, np.full_like(shift, shift[0, 0]), atol=1e-4)
    assert not np.allclose(result.logits.numpy(), model_output, atol=1e-3)
    assert probe.output_activation == "softmax"
    expected_source = (
        LOGITS_FROM_ACTIVATION_INPUT
        if architecture == "functional_bn_residual"
        else LOGITS_FROM_DENSE_PREACTIVATION
    )
    assert probe.logit_source == expected_source


def test_probe_gradients_inside_tf_function_equal_eager_ones(saved_models: dict) -> None:
    _, conv_paths, shape, _ = factories.GOOD_ARCHITECTURES["nested_submodel"]
    probe = build_probe(load_model_safely(saved_models[("nested_submodel", "h5")]), conv_paths)
    x = clip_for(shape)

    def gradients(clip: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            activations, logits = probe(clip)
            score = logits[:, 1]
        return tape.gradient(score, activations)

    eager = gradients(x)
    compiled = tf.function(gradients)(x)
    for eager_gradient, compiled_gradient in zip(eager, compiled):
        assert relative_error(compiled_gradient, eager_gradient) < 1e-5


@pytest.mark.parametrize(
    ("final_activation", "expected_source"),
    [("sigmoid", LOGITS_FROM_DENSE_PREACTIVATION), ("linear", LOGITS_FROM_MODEL_OUTPUT)],
)
def test_probe_for_sigmoid_and_linear_outputs(
    tmp_path: Path, final_activation: str, expected_source: str
) -> None:
    built = factories.conv3d_model_with_input_shape(
        input_shape=(4, 8, 8, 3), final_activation=final_activation
    )
    model = load_model_safely(factories.save_model(built, directory=tmp_path, fmt="keras"))
    probe = build_probe(model, ["odd_shape/conv3d_1"])
    x = clip_for([4, 8, 8, 3])
    result = probe.forward(x)
    assert probe.logit_source == expected_source and probe.output_activation == final_activation
    model_output = model(x).numpy()
    if final_activation == "sigmoid":  # probabilities are the model's own sigmoid outputs
        np.testing.assert_allclose(probe.probabilities(result.logits).numpy(), model_output, atol=1e-6)
        np.testing.assert_allclose(
            result.logits.numpy(), np.log(model_output / (1 - model_output)), atol=1e-4
        )
    else:  # raw scores are the logits; probabilities are their softmax
        np.testing.assert_allclose(result.logits.numpy(), model_output, atol=1e-6)
        np.testing.assert_allclose(
            probe.probabilities(result.logits).numpy(), tf.nn.softmax(model_output).numpy(), atol=1e-6
        )


def test_build_probe_leaves_the_users_model_unchanged(saved_models: dict) -> None:
    model = load_model_safely(saved_models[("nested_submodel", "keras")])
    x = clip_for([8, 32, 32, 3])
    before_output = model(x).numpy()
    before_weights = [w.copy() for w in model.get_weights()]
    all_layers = [layer for _, layer in _leaf_chain(model, model.name)]
    before_nodes = [len(layer._inbound_nodes) for layer in all_layers]
    before_activations = [getattr(layer, "activation", None) for layer in all_layers]
    probe = build_probe(model, conv3d_layer_paths(model))
    with tf.GradientTape() as tape:
        _, logits = probe(x)
        score = logits[:, 0]
    tape.gradient(score, model.trainable_variables)
    np.testing.assert_array_equal(model(x).numpy(), before_output)
    for after, before in zip(model.get_weights(), before_weights):
        np.testing.assert_array_equal(after, before)
    assert [len(layer._inbound_nodes) for layer in all_layers] == before_nodes
    assert [getattr(layer, "activation", None) for layer in all_layers] == before_activations
    assert model.get_layer("scores").activation.__name__ == "softmax"


def test_build_probe_refuses_an_unknown_layer_path(saved_models: dict) -> None:
    model = load_model_safely(saved_models[("nested_submodel", "h5")])
    with pytest.raises(Refusal) as caught:
        build_probe(model, ["outer_model/conv3d_1"])
    assert caught.value.code == "unknown_layer"
    assert "outer_model/inner_block/conv3d_1" in str(caught.value)


def test_probe_can_capture_non_conv_layers_in_request_order(saved_models: dict) -> None:
    model = load_model_safely(saved_models[("functional_bn_residual", "h5")])
    paths = ["functional_bn_res/residual_add", "functional_bn_res/stem_conv3d"]
    activations, _ = build_probe(model, paths)(clip_for([8, 32, 32, 3]))
    expected_add = _functional_reference(model, clip_for([8, 32, 32, 3]), paths[0], 0)[0]
    assert relative_error(activations[0], expected_add) < 1e-5
    assert activations[1].shape == (1, 8, 32, 32, 6)
