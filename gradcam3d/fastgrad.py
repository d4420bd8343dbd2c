"""Fast activation-only gradients: Conv3D as a forward convolution, MaxPool3D as a mask.

With oneDNN off (it must stay off: its graph rewrites give wrong Conv3D gradients in TF 2.21),
Eigen's Conv3DBackpropInputV2 costs about 4x the forward Conv3D on this CPU. For a convolution
with strides 1 and dilations 1 the gradient with respect to its INPUT is itself a plain
convolution: the output gradient convolved with the spatially flipped kernel whose input and
output channel axes are swapped ("full" correlation). With an odd kernel and 'SAME' padding
the padding is symmetric, so that is a 'SAME' forward conv; with 'VALID' padding the gradient
is padded by k-1 on each side and convolved 'VALID'.

Grad-CAM never needs weight gradients, so the filter gradient is None. Any other Conv3D
(strided, dilated, even kernel with 'SAME', channels-first, unknown kernel shape) keeps
TensorFlow's own gradient.

MaxPool3D with non-overlapping windows (ksize == strides, the C3D case) gets a mask
gradient: TF's CPU MaxPool3DGrad loops per window and cost ~10x the pooling itself (130 ms a
class on the benchmark model, more than all its convolutions). It reproduces TF's rule
bit for bit (see max_pool3d_input_gradient). Overlapping pools keep TF's own gradient.

`activation_only_conv3d_gradients()` is a context manager for graph construction (tracing a
`tf.function`): Conv3D and MaxPool3D ops created inside it carry the gradient override, which
`tf.gradients` honours. Note: `tf.GradientTape` ignores `gradient_override_map` (it looks the
gradient up by op type), so callers must use `tf.gradients` on the traced graph.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from gradcam3d.tf import import_tensorflow

GRADIENT_NAME = "GradCam3DActivationOnlyConv3D"
MAX_POOL_GRADIENT_NAME = "GradCam3DMaxPool3DNonOverlapping"

# pooling_ops_3d.cc, LaunchMaxPooling3dGradOp<CPUDevice>: (in - out).abs() < 1e-5.
_TF_MAX_POOL_3D_GRAD_TOLERANCE = 1e-5

_lock = threading.Lock()
_registered = False


def fast_input_gradient_applies(
    *,
    strides: Sequence[int],
    dilations: Sequence[int],
    kernel_shape: Sequence[int | None],
    padding: str,
    data_format: str,
) -> bool:
    """Whether the forward-conv input gradient is exact and used for this Conv3D."""
    if data_format != "NDHWC" or padding not in ("SAME", "VALID"):
        return False
    if any(int(s) != 1 for s in strides) or any(int(d) != 1 for d in dilations):
        return False
    if len(kernel_shape) != 5 or any(k is None for k in kernel_shape):
        return False
    return all(k is not None and int(k) % 2 == 1 for k in kernel_shape[:3])


def conv3d_input_gradient(out_gradient: Any, kernel: Any, *, padding: str) -> Any:
    """d(conv3d(x, kernel, strides 1, dilations 1, padding)) / dx applied to `out_gradient`.

    `kernel` is (kd, kh, kw, C_in, C_out) with odd static spatial sizes; NDHWC tensors.
    """
    tf = import_tensorflow()

    flipped = tf.reverse(kernel, axis=[0, 1, 2])
    swapped = tf.transpose(flipped, [0, 1, 2, 4, 3])  # (kd, kh, kw, C_out, C_in)
    if padding == "VALID":
        kd, kh, kw = (int(k) for k in kernel.shape[:3])
        out_gradient = tf.pad(
            out_gradient, [[0, 0], [kd - 1, kd - 1], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]
        )
    return tf.nn.conv3d(out_gradient, swapped, strides=[1, 1, 1, 1, 1], padding=padding)


def _default_conv3d_gradients(op: Any, grad: Any) -> list[Any]:
    """TensorFlow's own Conv3D gradient (the same ops as tensorflow/python/ops/nn_grad.py)."""
    tf = import_tensorflow()

    attrs = {
        "dilations": op.get_attr("dilations"),
        "strides": op.get_attr("strides"),
        "padding": op.get_attr("padding"),
        "data_format": op.get_attr("data_format"),
    }
    input_shape, filter_shape = tf.shape_n([op.inputs[0], op.inputs[1]])
    return [
        tf.raw_ops.Conv3DBackpropInputV2(
            input_sizes=input_shape, filter=op.inputs[1], out_backprop=grad, **attrs
        ),
        tf.raw_ops.Conv3DBackpropFilterV2(
            input=op.inputs[0], filter_sizes=filter_shape, out_backprop=grad, **attrs
        ),
    ]


def _activation_only_conv3d_gradients(op: Any, grad: Any) -> list[Any]:
    padding = op.get_attr("padding").decode()
    kernel = op.inputs[1]
    applies = fast_input_gradient_applies(
        strides=op.get_attr("strides"),
        dilations=op.get_attr("dilations"),
        kernel_shape=kernel.shape.as_list() if kernel.shape.rank is not None else [],
        padding=padding,
        data_format=op.get_attr("data_format").decode(),
    )
    if not applies:
        return _default_conv3d_gradients(op, grad)
    return [conv3d_input_gradient(grad, kernel, padding=padding), None]


def fast_max_pool3d_gradient_applies(
    *, ksize: Sequence[int], strides: Sequence[int], data_format: str, padding: str
) -> bool:
    """Whether the mask MaxPool3D gradient is used: non-overlapping windows only."""
    if data_format != "NDHWC" or padding not in ("SAME", "VALID"):
        return False
    ksize, strides = [int(k) for k in ksize], [int(s) for s in strides]
    return len(ksize) == 5 and ksize == strides and ksize[0] == 1 and ksize[4] == 1


def max_pool3d_input_gradient(
    inputs: Any, pooled: Any, out_gradient: Any, *, window: Sequence[int], padding: str
) -> Any:
    """Gradient of a MaxPool3D whose windows do not overlap (ksize == strides), NDHWC.

    Exactly what TensorFlow's CPU MaxPool3DGrad computes: the output gradient goes to EVERY
    element within 1e-5 (absolute) of its window's maximum, ties included (e.g. all-zero
    windows after ReLU) and near-ties too; an exact `x == max` differs from TF (and from an
    eager GradientTape) by up to 10% of a map's peak on the benchmark's C3D model.
    Done with whole-tensor ops (reshape, broadcast compare, select) instead of that kernel's per-window
    loop, which cost ~10x the pooling itself here. Needs static shapes (all but the batch).
    """
    tf = import_tensorflow()

    kd, kh, kw = (int(k) for k in window)
    _, depth, height, width, _ = inputs.shape.as_list()
    _, out_d, out_h, out_w, _ = pooled.shape.as_list()
    before_after = _window_borders(
        sizes=((depth, out_d, kd), (height, out_h, kh), (width, out_w, kw)), padding=padding
    )
    needs_padding = padding == "SAME" and any(b or a for b, a in before_after)
    needs_cropping = padding == "VALID" and any(a for _, a in before_after)
    # Slices and pads only where the windows do not tile the input exactly (each costs trace
    # time; the C3D case needs neither).
    cropped = inputs[:, : out_d * kd, : out_h * kh, : out_w * kw, :] if needs_cropping else inputs
    if needs_padding:
        lowest = tf.constant(float("-inf"), dtype=inputs.dtype)
        cropped = tf.pad(cropped, [[0, 0], *[list(p) for p in before_after], [0, 0]], constant_values=lowest)

    # TF's kernel (pooling_ops_3d.cc) selects |x - max| < 1e-5, not x == max: near-maxima get
    # the gradient too. Reproduced exactly, so the maps equal an eager GradientTape's.
    near_maximum = tf.abs(cropped - _spread_over_windows(pooled, window=(kd, kh, kw))) < tf.constant(
        _TF_MAX_POOL_3D_GRAD_TOLERANCE, cropped.dtype
    )
    # The incoming gradient has the pooled output's shape; give it that static shape
    # (_spread_over_windows reads it) even where the graph only knows it dynamically.
    out_gradient = tf.reshape(out_gradient, [-1, *pooled.shape.as_list()[1:]])
    gradient = tf.where(
        near_maximum, _spread_over_windows(out_gradient, window=(kd, kh, kw)), tf.zeros_like(cropped)
    )
    if needs_padding:
        (bd, _), (bh, _), (bw, _) = before_after
        return gradient[:, bd : bd + depth, bh : bh + height, bw : bw + width, :]
    if needs_cropping:
        return tf.pad(gradient, [[0, 0], *[[0, dropped] for _, dropped in before_after], [0, 0]])
    return gradient


def _window_borders(*, sizes: Sequence[tuple[int, int, int]], padding: str) -> list[tuple[int, int]]:
    """Per axis (input size n, output size, window k): the (before, after) elements the windows
    add or leave out. SAME pads (out*k - n) split as TF does (the smaller half before); VALID
    drops the trailing n - out*k elements, which get no gradient."""
    before_after = []
    for n, out, k in sizes:
        if padding == "SAME":
            total = max(out * k - n, 0)
            before_after.append((total // 2, total - total // 2))
        else:
            before_after.append((0, n - out * k))
    return before_after


def _spread_over_windows(tensor: Any, *, window: Sequence[int]) -> Any:
    """Each pooled cell repeated over its window: (1, D, H, W, C) -> (1, D*kd, H*kh, W*kw, C).

    A rank-4 reshape/tile/reshape per axis: what tf.repeat computes, in 3 ops instead of
    its ~50 generic ones (which were a third of the tracing time)."""
    tf = import_tensorflow()

    for axis, k in zip((1, 2, 3), window):
        if k == 1:
            continue
        shape = tensor.shape.as_list()  # static except perhaps the batch
        inner = math.prod(shape[axis + 1 :])
        tiled = tf.tile(tf.reshape(tensor, [-1, shape[axis], 1, inner]), [1, 1, k, 1])
        tensor = tf.reshape(tiled, [-1, *shape[1:axis], shape[axis] * k, *shape[axis + 1 :]])
    return tensor


def _fast_max_pool3d_gradient(op: Any, grad: Any) -> Any:
    tf = import_tensorflow()

    inputs, pooled = op.inputs[0], op.outputs[0]
    attrs = {
        "ksize": op.get_attr("ksize"),
        "strides": op.get_attr("strides"),
        "padding": op.get_attr("padding").decode(),
        "data_format": op.get_attr("data_format").decode(),
    }
    static = (
        inputs.shape.rank == 5
        and None not in inputs.shape.as_list()[1:]
        and None not in pooled.shape.as_list()[1:]
    )
    if static and fast_max_pool3d_gradient_applies(**attrs):
        return max_pool3d_input_gradient(
            inputs, pooled, grad, window=attrs["ksize"][1:4], padding=attrs["padding"]
        )
    return tf.raw_ops.MaxPool3DGrad(orig_input=inputs, orig_output=pooled, grad=grad, **attrs)


_GRADIENTS = {
    "Conv3D": (GRADIENT_NAME, _activation_only_conv3d_gradients),
    "MaxPool3D": (MAX_POOL_GRADIENT_NAME, _fast_max_pool3d_gradient),
}


def register() -> dict[str, str]:
    """Register the gradient functions once per process; returns the override map."""
    global _registered
    with _lock:
        if not _registered:
            tf = import_tensorflow()

            for name, function in _GRADIENTS.values():
                try:
                    tf.RegisterGradient(name)(function)
                except KeyError:  # already registered (e.g. this module was reloaded)
                    pass
            _registered = True
    return {op_type: name for op_type, (name, _) in _GRADIENTS.items()}


@contextlib.contextmanager
def activation_only_conv3d_gradients() -> Iterator[None]:
    """While building a graph: Conv3D and MaxPool3D ops created here get the fast gradients."""
    tf = import_tensorflow()

    override_map = register()
    graph = tf.compat.v1.get_default_graph()
    with graph.gradient_override_map(override_map):
        yield
