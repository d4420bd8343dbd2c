"""The fused CAM maps equal a plain per-layer reference, for every layer of several models.

The reference is deliberately the naive method: an eager `tf.GradientTape`, one layer and one
class at a time, the Conv3D output captured by wrapping that layer's `call`, and the score
taken before softmax by loading a separate copy of the model and setting its last activation to
linear (what the original tool did). The maps are then computed with NumPy from the papers'
formulas: Grad-CAM, Grad-CAM++ (both poolings), Layer-CAM and HiResCAM.
Tolerance: 1e-5 of each reference map's maximum (raw maps can be ~1e-6, so an absolute
tolerance would prove nothing).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from gradcam3d.cam import FusedGradCam, method_pooling, normalise_for_display, upsample_trilinear  # noqa: E402
from gradcam3d.loading import build_probe, load_model_safely  # noqa: E402
from gradcam3d.modelcheck import inspect_model  # noqa: E402

L = keras.layers
RELATIVE_TOLERANCE = 1e-5


# ---------------------------------------------------------------------------------------------
# Small models (random weights, seeded)


def sequential_with_input(shape: tuple[int, ...] = (8, 16, 16, 3), classes: int = 3) -> Any:
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input(shape=shape),
            L.Conv3D(4, 3, padding="same", activation="relu", name="conv_a"),
            L.MaxPooling3D((1, 2, 2)),
            L.Conv3D(6, 3, padding="same", activation="relu", name="conv_b"),
            L.Conv3D(5, 3, padding="same", name="conv_c"),  # no ReLU: negative activations too
            L.GlobalAveragePooling3D(),
            L.Dense(classes, activation="softmax", name="scores"),
        ],
        name="seq_in",
    )


def sequential_without_input() -> Any:
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            L.Conv3D(4, 3, padding="same", activation="relu", name="conv_a", input_shape=(6, 12, 12, 3)),
            L.Conv3D(4, 3, strides=(1, 2, 2), padding="same", activation="relu", name="conv_b"),
            L.Flatten(),
            L.Dense(3, name="dense_hidden", activation="relu"),
            L.Dense(4, activation="softmax", name="scores"),
        ],
        name="seq_no_in",
    )
    return model


def functional_bn_residual() -> Any:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 16, 16, 3), name="clip")
    x = L.Conv3D(6, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation("relu")(x)
    y = L.Conv3D(6, 3, padding="same", name="res_conv")(x)
    y = L.BatchNormalization(name="bn2")(y)
    x = L.Activation("relu")(L.Add()([x, y]))
    x = L.Conv3D(8, 3, strides=2, padding="same", activation="relu", name="down")(x)
    x = L.GlobalAveragePooling3D()(x)
    outputs = L.Dense(3, activation="softmax", name="scores")(x)
    model = keras.Model(inputs, outputs, name="func_res")
    # Non-trivial BatchNorm statistics, so inference-mode BN is really exercised.
    for bn in (model.get_layer("bn1"), model.get_layer("bn2")):
        gamma, beta, mean, var = bn.get_weights()
        rng = np.random.default_rng(4)
        bn.set_weights([gamma * 1.3, beta + 0.1, mean + rng.normal(0, 0.1, mean.shape), var * 0.7])
    return model


def nested_sub_model() -> Any:
    keras.utils.set_random_seed(5)
    inner = keras.Sequential(
        [
            keras.Input((8, 16, 16, 4)),
            L.Conv3D(5, 3, padding="same", activation="relu", name="inner_conv1"),
            L.Conv3D(5, 3, padding="same", activation="relu", name="inner_conv2"),
        ],
        name="backbone",
    )
    inputs = keras.Input((8, 16, 16, 3))
    x = L.Conv3D(4, 3, padding="same", activation="relu", name="outer_conv")(inputs)
    x = inner(x)
    x = L.GlobalAveragePooling3D()(x)
    outputs = L.Dense(3, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="nested")


def grayscale_model() -> Any:
    keras.utils.set_random_seed(6)
    return keras.Sequential(
        [
            keras.Input((8, 64, 64, 1)),
            L.Conv3D(4, 3, strides=(1, 2, 2), padding="same", activation="relu", name="g1"),
            L.Conv3D(6, 3, strides=(2, 2, 2), padding="same", activation="relu", name="g2"),
            L.GlobalAveragePooling3D(),
            L.Dense(2, activation="softmax", name="scores"),
        ],
        name="gray",
    )


def mixed_conv_kinds() -> Any:
    """Every Conv3D kind around the fast activation-only gradient (gradcam3d.fastgrad).

    Strides 1 + odd kernel ('same' and 'valid', also the inner conv of a dilated one) use the
    forward-conv input gradient; an even kernel with 'same' and a strided conv keep TF's own.
    """
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((8, 16, 16, 3)),
            L.Conv3D(4, 3, padding="same", activation="relu", name="odd_same"),
            L.Conv3D(5, 2, padding="same", activation="relu", name="even_same"),
            L.Conv3D(5, (3, 3, 3), strides=(1, 2, 2), padding="same", activation="relu", name="strided"),
            L.Conv3D(6, (3, 1, 5), padding="valid", name="odd_valid"),
            L.Conv3D(4, 3, dilation_rate=(1, 2, 2), padding="same", activation="relu", name="dilated"),
            L.Conv3D(4, (1, 2, 2), padding="valid", activation="relu", name="even_valid"),
            L.GlobalAveragePooling3D(),
            L.Dense(3, activation="softmax", name="scores"),
        ],
        name="mixed_convs",
    )


MODELS: dict[str, Callable[[], Any]] = {
    "sequential_with_input": sequential_with_input,
    "sequential_without_input": sequential_without_input,
    "functional_bn_residual": functional_bn_residual,
    "nested_sub_model": nested_sub_model,
    "grayscale_8x64x64x1": grayscale_model,
    "strided_even_valid_dilated_convs": mixed_conv_kinds,
}


def saved(model: Any, directory: Path, suffix: str = ".h5") -> Path:
    path = directory / f"{model.name}{suffix}"
    model.save(path)
    return path


def sample_input(shape: list[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, *shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The naive reference


def layer_by_path(model: Any, path: str) -> Any:
    layer = model
    for name in path.split("/")[1:]:  # the first part is the model's own name
        layer = layer.get_layer(name)
    return layer


def reference_activation_and_gradient(
    model_path: Path, layer_path: str, x: np.ndarray, class_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Eager tape, one layer, one class: (A, dScore/dA) each (T', H', W', C')."""
    model = keras.models.load_model(model_path, compile=False)
    model.layers[-1].activation = keras.activations.linear  # pre-softmax score, on a private copy
    layer = layer_by_path(model, layer_path)
    captured: list[Any] = []
    original_call = layer.call

    def capturing_call(*args: Any, **kwargs: Any) -> Any:
        output = original_call(*args, **kwargs)
        captured.append(output)
        return output

    layer.call = capturing_call
    with tf.GradientTape() as tape:
        scores = model(tf.constant(x), training=False)
        score = scores[0, class_index]
    (activation,) = captured
    gradient = tape.gradient(score, activation)
    return activation.numpy()[0].astype(np.float64), gradient.numpy()[0].astype(np.float64)


def reference_map(
    activation: np.ndarray, gradient: np.ndarray, *, method: str, pooling: str | None
) -> np.ndarray:
    if method == "layercam":  # Jiang et al. 2021: position-wise positive gradients, no pooling
        return np.maximum((np.maximum(gradient, 0) * activation).sum(axis=-1), 0.0)
    if method == "hirescam":  # Draelos & Carin 2020: position-wise signed gradients, no pooling
        return np.maximum((gradient * activation).sum(axis=-1), 0.0)
    axes = (0, 1, 2) if pooling == "global" else (1, 2)
    if method == "gradcam":
        weights = gradient.mean(axis=axes, keepdims=True)
    else:  # gradcam++, closed form
        g2, g3 = gradient**2, gradient**3
        denominator = 2 * g2 + activation.sum(axis=axes, keepdims=True) * g3
        alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=denominator != 0)
        weights = (alpha * np.maximum(gradient, 0)).sum(axis=axes, keepdims=True)
    return np.maximum((weights * activation).sum(axis=-1), 0.0)


def assert_map_close(fused: np.ndarray, reference: np.ndarray, *, what: str) -> None:
    assert fused.shape == reference.shape, what
    assert fused.dtype == np.float32
    assert np.isfinite(fused).all(), what
    peak = float(reference.max())
    if peak == 0.0:
        assert float(np.abs(fused).max()) == 0.0, what
        return
    error = float(np.abs(fused.astype(np.float64) - reference).max())
    assert error <= RELATIVE_TOLERANCE * peak, f"{what}: max error {error:.3g} vs peak {peak:.3g}"


def fused_for(
    model_path: Path,
    *,
    method: str = "gradcam",
    pooling: str | None = "global",
    x: np.ndarray | None = None,
    expected: int | None = None,
):
    info = inspect_model(model_path)
    model = load_model_safely(model_path)
    probe = build_probe(model, info["conv3d_layers"])
    x = sample_input(info["input_shape"]) if x is None else x
    fused = FusedGradCam(probe=probe, method=method, pooling=pooling)
    return info, x, fused(x, expected_class=expected)


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("model_name", list(MODELS))
def test_fused_gradcam_matches_per_layer_reference_for_every_layer_and_both_classes(
    model_name: str, tmp_path: Path
) -> None:
    model_path = saved(MODELS[model_name](), tmp_path)
    info = inspect_model(model_path)
    x = sample_input(info["input_shape"])
    _, _, first = fused_for(model_path, x=x)
    other = (first.predicted_class + 1) % info["num_classes"]
    _, _, result = fused_for(model_path, x=x, expected=other)
    assert set(result.maps) == {first.predicted_class, other}
    assert len(info["conv3d_layers"]) >= 2
    for class_index in (first.predicted_class, other):
        for position, layer_path in enumerate(info["conv3d_layers"]):
            activation, gradient = reference_activation_and_gradient(model_path, layer_path, x, class_index)
            expected_map = reference_map(activation, gradient, method="gradcam", pooling="global")
            assert result.activation_shapes[position] == activation.shape
            assert_map_close(
                result.maps[class_index][position],
                expected_map,
                what=f"{model_name} {layer_path} class {class_index}",
            )


@pytest.mark.parametrize("model_name", list(MODELS))
def test_fused_layercam_and_hirescam_match_per_layer_reference_for_every_layer_and_both_classes(
    model_name: str,
    tmp_path: Path,
) -> None:
    model_path = saved(MODELS[model_name](), tmp_path)
    info = inspect_model(model_path)
    x = sample_input(info["input_shape"])
    _, _, first = fused_for(model_path, method="layercam", x=x)
    other = (first.predicted_class + 1) % info["num_classes"]
    results = {
        method: fused_for(model_path, method=method, x=x, expected=other)[2]
        for method in ("layercam", "hirescam")
    }
    differ = 0
    for class_index in (first.predicted_class, other):
        for position, layer_path in enumerate(info["conv3d_layers"]):
            activation, gradient = reference_activation_and_gradient(model_path, layer_path, x, class_index)
            references = {
                method: reference_map(activation, gradient, method=method, pooling=None) for method in results
            }
            for method, result in results.items():
                assert set(result.maps) == {first.predicted_class, other}
                assert_map_close(
                    result.maps[class_index][position],
                    references[method],
                    what=f"{method} {model_name} {layer_path} class {class_index}",
                )
            differ += not np.allclose(
                references["layercam"],
                references["hirescam"],
                rtol=0,
                atol=1e-3 * references["layercam"].max(),
            )
    # Negative gradients exist, so the two methods really differ and each check above has teeth.
    assert differ > 0


def test_element_wise_methods_take_no_pooling_and_refuse_temporal(tmp_path: Path) -> None:
    model_path = saved(sequential_with_input(), tmp_path)
    info = inspect_model(model_path)
    probe = build_probe(load_model_safely(model_path), info["conv3d_layers"])
    for method in ("layercam", "hirescam"):
        assert method_pooling(method=method, pooling="global") is None
        assert method_pooling(method=method, pooling=None) is None
        assert FusedGradCam(probe=probe, method=method).pooling is None
        with pytest.raises(ValueError, match="no gradient pooling") as refused:
            FusedGradCam(probe=probe, method=method, pooling="temporal")
        assert str(refused.value).endswith(".") and "gradcam or gradcam++" in str(refused.value)
    for method in ("gradcam", "gradcam++"):
        assert method_pooling(method=method, pooling=None) == "global"
        assert FusedGradCam(probe=probe, method=method, pooling="temporal").pooling == "temporal"


def test_strided_and_even_kernel_convs_keep_tf_gradient_and_still_match_the_reference(tmp_path: Path) -> None:
    model_path = saved(mixed_conv_kinds(), tmp_path)
    info = inspect_model(model_path)
    model = load_model_safely(model_path)
    x = sample_input(info["input_shape"], seed=3)
    fused = FusedGradCam(probe=build_probe(model, info["conv3d_layers"]))
    graph_ops = [op.type for op in fused.concrete_function(x, expected_class=0).graph.get_operations()]
    # Input gradients are needed through every conv but the first, once per class. TF's own
    # Conv3DBackpropInputV2 only for even_same, strided and even_valid (an even kernel or a
    # stride); odd_valid and the dilated conv (SpaceToBatch + a stride-1 Conv3D) use a forward
    # Conv3D: 6 forward convs + 2 fast ones per class.
    assert graph_ops.count("Conv3DBackpropInputV2") == 3 * 2
    assert graph_ops.count("Conv3D") == 6 + 2 * 2
    # (Grad-CAM with global pooling is checked on this model by the parametrized test above.)
    fused = FusedGradCam(
        probe=build_probe(model, info["conv3d_layers"]), method="gradcam++", pooling="temporal"
    )
    result = fused(x, expected_class=0)
    for class_index in result.maps:
        for position, layer_path in enumerate(info["conv3d_layers"]):
            activation, gradient = reference_activation_and_gradient(model_path, layer_path, x, class_index)
            expected_map = reference_map(activation, gradient, method="gradcam++", pooling="temporal")
            assert_map_close(
                result.maps[class_index][position], expected_map, what=f"{layer_path} class {class_index}"
            )


def test_c3d_style_graph_has_no_backprop_input_weight_gradient_or_max_pool_grad_ops(tmp_path: Path) -> None:
    # Strides 1, odd kernels everywhere: every Conv3D input gradient is a forward Conv3D.
    model_path = saved(sequential_with_input(), tmp_path)
    info = inspect_model(model_path)
    fused = FusedGradCam(probe=build_probe(load_model_safely(model_path), info["conv3d_layers"]))
    graph_ops = [
        op.type
        for op in fused.concrete_function(
            sample_input(info["input_shape"]), expected_class=1
        ).graph.get_operations()
    ]
    assert "Conv3DBackpropInputV2" not in graph_ops
    assert "Conv3DBackpropFilterV2" not in graph_ops
    assert "MaxPool3DGrad" not in graph_ops  # non-overlapping windows: mask gradient
    assert graph_ops.count("Conv3D") == 3 + 2 * 2  # conv_b, conv_c input gradients per class


@pytest.mark.parametrize(
    "method,pooling", [("gradcam", "temporal"), ("gradcam++", "global"), ("gradcam++", "temporal")]
)
def test_gradcam_plus_plus_and_temporal_pooling_match_their_formulas(
    method: str, pooling: str, tmp_path: Path
) -> None:
    model_path = saved(functional_bn_residual(), tmp_path)
    info, x, result = fused_for(model_path, method=method, pooling=pooling, expected=0)
    for class_index in result.maps:
        for position, layer_path in enumerate(info["conv3d_layers"]):
            activation, gradient = reference_activation_and_gradient(model_path, layer_path, x, class_index)
            expected_map = reference_map(activation, gradient, method=method, pooling=pooling)
            assert_map_close(
                result.maps[class_index][position], expected_map, what=f"{method}/{pooling} {layer_path}"
            )


def test_h5_and_keras_files_give_the_same_maps(tmp_path: Path) -> None:
    model = nested_sub_model()
    h5_path, keras_path = saved(model, tmp_path, ".h5"), saved(model, tmp_path, ".keras")
    info, x, from_h5 = fused_for(h5_path, expected=1)
    _, _, from_keras = fused_for(keras_path, x=x, expected=1)
    assert from_h5.predicted_class == from_keras.predicted_class
    np.testing.assert_array_equal(from_h5.logits, from_keras.logits)
    for class_index in from_h5.maps:
        for a, b in zip(from_h5.maps[class_index], from_keras.maps[class_index]):
            np.testing.assert_array_equal(a, b)


def test_map_that_relu_makes_all_zero_stays_zero_not_nan(tmp_path: Path) -> None:
    # Positive activations (ReLU + positive bias) and a Dense layer with only negative weights:
    # every channel weight is negative, so the weighted sum is negative everywhere.
    inputs = keras.Input((4, 8, 8, 1))
    x = L.Conv3D(
        3,
        3,
        padding="same",
        activation="relu",
        bias_initializer=keras.initializers.Constant(1.0),
        name="conv",
    )(inputs)
    x = L.GlobalAveragePooling3D()(x)
    outputs = L.Dense(
        2, activation="softmax", kernel_initializer=keras.initializers.Constant(-1.0), name="scores"
    )(x)
    model_path = saved(keras.Model(inputs, outputs, name="negative"), tmp_path)
    _, _, result = fused_for(model_path)
    (raw,) = result.maps[result.predicted_class]
    assert np.isfinite(raw).all() and float(raw.max()) == 0.0
    display = normalise_for_display(upsample_trilinear(raw, size=(4, 8, 8)))
    assert np.isfinite(display).all() and float(display.max()) == 0.0


def test_same_inputs_give_byte_identical_maps(tmp_path: Path) -> None:
    model_path = saved(functional_bn_residual(), tmp_path)
    _, x, first = fused_for(model_path, expected=2)
    _, _, second = fused_for(model_path, x=x, expected=2)
    for class_index in first.maps:
        for a, b in zip(first.maps[class_index], second.maps[class_index]):
            assert a.tobytes() == b.tobytes()


def test_expected_equal_to_predicted_gives_one_class_of_maps(tmp_path: Path) -> None:
    model_path = saved(sequential_with_input(), tmp_path)
    _, x, alone = fused_for(model_path)
    _, _, same = fused_for(model_path, x=x, expected=alone.predicted_class)
    assert list(same.maps) == [alone.predicted_class]
    for a, b in zip(alone.maps[alone.predicted_class], same.maps[alone.predicted_class]):
        np.testing.assert_array_equal(a, b)


def test_trilinear_upsampling_is_linear_and_keeps_constants_and_zeros() -> None:
    constant = np.full((2, 3, 3), 0.7, dtype=np.float32)
    np.testing.assert_allclose(upsample_trilinear(constant, size=(8, 12, 12)), 0.7, rtol=1e-6)
    assert upsample_trilinear(np.zeros((2, 2, 2), np.float32), size=(4, 4, 4)).max() == 0.0
    ramp = np.arange(4, dtype=np.float32).reshape(4, 1, 1)
    up = upsample_trilinear(ramp, size=(8, 1, 1))[:, 0, 0]
    # Half-pixel centres: interior samples lie on the line between neighbours, ends clamp.
    np.testing.assert_allclose(up, [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0], atol=1e-6)
    # Matches OpenCV's bilinear resize on a 2-D slice (the same convention).
    import cv2

    plane = np.random.default_rng(0).random((1, 5, 7)).astype(np.float32)
    ours = upsample_trilinear(plane, size=(1, 20, 21))[0]
    np.testing.assert_allclose(
        ours, cv2.resize(plane[0], (21, 20), interpolation=cv2.INTER_LINEAR), atol=1e-5
    )
