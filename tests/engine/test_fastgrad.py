"""The activation-only Conv3D gradient equals TensorFlow's own input gradient.

For strides 1, dilations 1 and odd kernels, gradcam3d.fastgrad computes the gradient with
respect to the conv input as a forward conv with the flipped, channel-swapped kernel. Checked
here against TF's Conv3DBackpropInputV2 (an eager tape) on random tensors, for 'SAME' and
'VALID', directly and through the gradient override inside a tf.function; other convs must
keep TF's own gradient (filter gradient included).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from gradcam3d import fastgrad  # noqa: E402

RELATIVE_TOLERANCE = 1e-5

KERNELS = [(3, 3, 3), (1, 3, 5), (5, 1, 3), (1, 1, 1)]


def random_case(
    kernel: tuple[int, int, int], *, seed: int, c_in: int = 3, c_out: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 7, 9, 8, c_in)).astype(np.float32)
    w = rng.normal(size=(*kernel, c_in, c_out)).astype(np.float32)
    return x, w


def tf_input_gradient(
    x: np.ndarray, w: np.ndarray, upstream: np.ndarray, *, padding: str, strides: list[int] | None = None
) -> np.ndarray:
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        y = tf.nn.conv3d(x_t, tf.constant(w), strides=strides or [1] * 5, padding=padding)
        loss = tf.reduce_sum(y * upstream)
    return tape.gradient(loss, x_t).numpy()


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    peak = float(np.abs(theirs).max())
    assert peak > 0
    error = float(np.abs(ours.astype(np.float64) - theirs).max())
    assert error <= RELATIVE_TOLERANCE * peak, f"max error {error:.3g} vs peak {peak:.3g}"


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_forward_conv_input_gradient_equals_tf_backprop_input(
    padding: str, kernel: tuple[int, int, int]
) -> None:
    x, w = random_case(kernel, seed=sum(kernel))
    y_shape = tf.nn.conv3d(x, w, strides=[1] * 5, padding=padding).shape
    upstream = np.random.default_rng(9).normal(size=y_shape).astype(np.float32)
    ours = fastgrad.conv3d_input_gradient(tf.constant(upstream), tf.constant(w), padding=padding).numpy()
    assert_close(ours, tf_input_gradient(x, w, upstream, padding=padding))


def gradients_through_override(
    x: np.ndarray, w: np.ndarray, upstream: np.ndarray, *, padding: str, strides: list[int]
) -> tuple[list[str], np.ndarray, bool]:
    """(graph op types, input gradient, whether a filter gradient was built) via tf.gradients."""
    filter_gradient_built: list[bool] = []

    @tf.function
    def run(x_t: tf.Tensor, w_t: tf.Tensor) -> tf.Tensor:
        with fastgrad.activation_only_conv3d_gradients():
            y = tf.nn.conv3d(x_t, w_t, strides=strides, padding=padding)
        loss = tf.reduce_sum(y * upstream)
        input_gradient, filter_gradient = tf.gradients(loss, [x_t, w_t])
        filter_gradient_built.append(filter_gradient is not None)
        return input_gradient

    concrete = run.get_concrete_function(tf.constant(x), tf.constant(w))
    ops = [op.type for op in concrete.graph.get_operations()]
    return ops, run(tf.constant(x), tf.constant(w)).numpy(), filter_gradient_built[0]


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 3, 5)])
def test_override_in_a_tf_function_uses_the_forward_conv_and_no_filter_gradient(
    padding: str, kernel: tuple[int, int, int]
) -> None:
    x, w = random_case(kernel, seed=1)
    y_shape = tf.nn.conv3d(x, w, strides=[1] * 5, padding=padding).shape
    upstream = np.random.default_rng(2).normal(size=y_shape).astype(np.float32)
    ops, gradient, filter_built = gradients_through_override(x, w, upstream, padding=padding, strides=[1] * 5)
    assert ops.count("Conv3D") == 2  # the forward and the gradient
    assert "Conv3DBackpropInputV2" not in ops and not filter_built
    assert_close(gradient, tf_input_gradient(x, w, upstream, padding=padding))


@pytest.mark.parametrize(
    "kernel,strides,padding",
    [
        ((3, 3, 3), [1, 1, 2, 2, 1], "SAME"),
        ((3, 3, 3), [1, 2, 1, 1, 1], "VALID"),
        ((2, 2, 2), [1] * 5, "SAME"),
        ((3, 2, 3), [1] * 5, "VALID"),
    ],
)
def test_strided_and_even_kernel_convs_keep_tf_gradient(
    kernel: tuple[int, int, int], strides: list[int], padding: str
) -> None:
    x, w = random_case(kernel, seed=4)
    y_shape = tf.nn.conv3d(x, w, strides=strides, padding=padding).shape
    upstream = np.random.default_rng(5).normal(size=y_shape).astype(np.float32)
    ops, gradient, filter_built = gradients_through_override(x, w, upstream, padding=padding, strides=strides)
    assert "Conv3DBackpropInputV2" in ops and filter_built
    np.testing.assert_array_equal(
        gradient, tf_input_gradient(x, w, upstream, padding=padding, strides=strides)
    )


def test_fast_path_applies_only_to_stride_1_dilation_1_odd_kernels_channels_last() -> None:
    def applies(**overrides: object) -> bool:
        arguments = {
            "strides": [1] * 5,
            "dilations": [1] * 5,
            "kernel_shape": [3, 3, 3, 4, 8],
            "padding": "SAME",
            "data_format": "NDHWC",
        }
        arguments.update(overrides)
        return fastgrad.fast_input_gradient_applies(**arguments)  # type: ignore[arg-type]

    assert applies() and applies(padding="VALID") and applies(kernel_shape=[1, 5, 3, 2, 2])
    assert not applies(strides=[1, 1, 2, 2, 1])
    assert not applies(dilations=[1, 2, 2, 2, 1])
    assert not applies(kernel_shape=[2, 3, 3, 4, 8])
    assert not applies(kernel_shape=[3, 3, None, 4, 8])
    assert not applies(data_format="NCDHW")
    assert not applies(padding="EXPLICIT")


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("window", [(1, 2, 2), (2, 2, 2), (3, 3, 3), (1, 3, 2)])
@pytest.mark.parametrize(
    "shape", [(2, 7, 9, 10, 3), (2, 6, 12, 12, 3)], ids=["ragged", "windows-tile-exactly"]
)
def test_max_pool_gradient_equals_tf_bit_for_bit_with_ties_and_near_ties(
    padding: str, window: tuple[int, int, int], shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(sum(window))
    # ReLU-like input: exact ties (zeros, rounded values) and near-ties (within TF's 1e-5).
    x = np.maximum(rng.normal(size=shape), 0).round(2)
    x = (x + rng.choice([0.0, 3e-6, 2e-5], size=x.shape)).astype(np.float32)
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        pooled = tf.nn.max_pool3d(x_t, window, window, padding)
        upstream = tf.constant(rng.normal(size=pooled.shape).astype(np.float32))
        loss = tf.reduce_sum(pooled * upstream)
    theirs = tape.gradient(loss, x_t).numpy()

    @tf.function
    def through_override(inputs: tf.Tensor) -> tf.Tensor:
        with fastgrad.activation_only_conv3d_gradients():
            y = tf.nn.max_pool3d(inputs, window, window, padding)
        return tf.gradients(tf.reduce_sum(y * upstream), inputs)[0]

    ops = [op.type for op in through_override.get_concrete_function(x_t).graph.get_operations()]
    assert "MaxPool3DGrad" not in ops
    np.testing.assert_array_equal(through_override(x_t).numpy(), theirs)
    np.testing.assert_array_equal(
        fastgrad.max_pool3d_input_gradient(x_t, pooled, upstream, window=window, padding=padding).numpy(),
        theirs,
    )


def test_overlapping_max_pool_keeps_tf_gradient() -> None:
    x = tf.constant(np.random.default_rng(0).random((1, 6, 8, 8, 2)).astype(np.float32))

    @tf.function
    def through_override(inputs: tf.Tensor) -> tf.Tensor:
        with fastgrad.activation_only_conv3d_gradients():
            y = tf.nn.max_pool3d(inputs, 3, 2, "SAME")
        return tf.gradients(tf.reduce_sum(y), inputs)[0]

    assert "MaxPool3DGrad" in [
        op.type for op in through_override.get_concrete_function(x).graph.get_operations()
    ]
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.max_pool3d(x, 3, 2, "SAME"))
    np.testing.assert_array_equal(through_override(x).numpy(), tape.gradient(loss, x).numpy())
