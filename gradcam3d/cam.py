"""Fused 3D Grad-CAM: one forward pass, activation-only gradients, every selected layer at once.

The original tool built a sub-model and ran a new forward pass and an eager tape per layer per
class (eager tapes also compute every weight gradient). Here one `tf.function` runs the probe
once (all selected Conv3D activations plus the pre-softmax logits), then asks `tf.gradients`
only for gradients with respect to those activations, for the predicted class and, when it
differs, the expected class. Only the ops between the activations and the score are
differentiated, so no weight gradient is ever built; and the Conv3D ops of the probe use an
activation-only gradient (gradcam3d.fastgrad): for strides 1, dilations 1 and odd kernels the
input gradient is a forward Conv3D with the flipped kernel, about 4x cheaper than TensorFlow's
Conv3DBackpropInputV2 with oneDNN off; non-overlapping MaxPool3D gets a mask
gradient equal bit for bit to TF's slow per-window MaxPool3DGrad.

CAM methods are a small registry of TensorFlow functions `(activations, gradients, pooling) ->
map` (`register_cam_method`; the fused graph looks each method up there), so
Layer-CAM, HiResCAM and friends slot in as one function each. Grad-CAM and Grad-CAM++
pool the gradients into channel weights ("global" over T,H,W or "temporal" over H,W per time
slice); Layer-CAM and HiResCAM weight every position by its own gradient, so they take no
pooling (`method_pooling`).

Raw maps stay float32 at the layer's resolution (T', H', W') and keep their scale; only the
display helpers normalise. TensorFlow is imported lazily so the light CLI commands never pay
for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcam3d.fastgrad import activation_only_conv3d_gradients
from gradcam3d.tf import import_tensorflow

POOLINGS = ("global", "temporal")

# name -> function(activations (1,T,H,W,C), gradients (1,T,H,W,C), pooling) -> map (T,H,W)
CAM_METHODS: dict[str, Callable[..., Any]] = {}
# Methods that weight each channel by its pooled gradient. The others (Layer-CAM, HiResCAM)
# weight every position by its own gradient: pooling does not apply to them, and they get
# pooling None.
POOLED_METHODS: set[str] = set()


def register_cam_method(name: str, *, pooled: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        CAM_METHODS[name] = function
        if pooled:
            POOLED_METHODS.add(name)
        else:
            POOLED_METHODS.discard(name)
        return function

    return decorator


def method_pooling(*, method: str, pooling: str | None) -> str | None:
    """The pooling `method` really uses, or ValueError with a sentence for the user.

    Pooled methods: `pooling`, None meaning the default "global". Element-wise methods: None;
    "global" (the default everywhere) is accepted as "nothing asked for", but "temporal" is
    refused: whoever asks for per-frame weights must not silently get something else.
    """
    if not isinstance(method, str) or method not in CAM_METHODS:
        raise ValueError(f"Unknown method '{method}'; choose one of {', '.join(sorted(CAM_METHODS))}.")
    if pooling is not None and (not isinstance(pooling, str) or pooling not in POOLINGS):
        raise ValueError(f"Unknown pooling '{pooling}'; choose one of {', '.join(POOLINGS)}.")
    if method in POOLED_METHODS:
        return pooling or "global"
    if pooling in (None, "global"):
        return None
    pooled = " or ".join(sorted(POOLED_METHODS))
    raise ValueError(
        f"The method '{method}' weights every position by its own gradient, so it has no gradient "
        f"pooling and cannot give per-frame ('{pooling}') weights; use {pooled} for '{pooling}' pooling, "
        "or leave the pooling at 'global'."
    )


def _pool_axes(pooling: str) -> tuple[int, ...]:
    """Axes of a (1, T, H, W, C) tensor that gradient pooling averages over.

    "global": over T, H and W (one weight per channel: the original tool);
    "temporal": over H and W only (one weight per channel per time slice: MMAction2/SlowFast).
    """
    if pooling == "global":
        return (1, 2, 3)
    if pooling == "temporal":
        return (2, 3)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")


@register_cam_method("gradcam", pooled=True)
def gradcam_map(activations: Any, gradients: Any, pooling: str) -> Any:
    """Grad-CAM (Selvaraju et al. 2017): relu(sum_c mean(dS/dA_c) * A_c), S the pre-softmax score."""
    tf = import_tensorflow()

    weights = tf.reduce_mean(gradients, axis=_pool_axes(pooling), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0]


@register_cam_method("gradcam++", pooled=True)
def gradcam_plus_plus_map(activations: Any, gradients: Any, pooling: str) -> Any:
    """Closed-form Grad-CAM++ (Chattopadhyay et al. 2018) with the exponential-score trick.

    alpha = g^2 / (2 g^2 + sum(A) g^3), the sum over the pooled positions; weights =
    sum(alpha * relu(g)). The common factor exp(S) of the paper's derivatives is left out (as
    pytorch-grad-cam does): it only rescales the map and would overflow for large logits.
    """
    tf = import_tensorflow()

    axes = _pool_axes(pooling)
    grads_2 = tf.square(gradients)
    grads_3 = grads_2 * gradients
    sum_activations = tf.reduce_sum(activations, axis=axes, keepdims=True)
    denominator = 2 * grads_2 + sum_activations * grads_3
    # Where the denominator is zero the numerator is zero too (g == 0): alpha is 0, not NaN.
    safe_denominator = tf.where(denominator != 0, denominator, tf.ones_like(denominator))
    alpha = grads_2 / safe_denominator
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=axes, keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0]


@register_cam_method("layercam", pooled=False)
def layercam_map(activations: Any, gradients: Any, pooling: None) -> Any:
    """Layer-CAM (Jiang et al. 2021): relu(sum_c relu(dS/dA_c) * A_c), position by position."""
    tf = import_tensorflow()

    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1))[0]


@register_cam_method("hirescam", pooled=False)
def hirescam_map(activations: Any, gradients: Any, pooling: None) -> Any:
    """HiResCAM (Draelos & Carin 2020): sum_c dS/dA_c * A_c, the signed gradient unpooled; the
    final ReLU keeps the positive evidence, as for Grad-CAM."""
    tf = import_tensorflow()

    return tf.nn.relu(tf.reduce_sum(gradients * activations, axis=-1))[0]


@dataclass
class FusedCamResult:
    """Output of one fused run. `maps[class_index][layer_position]` is a raw float32 map."""

    logits: np.ndarray  # (num_classes,) pre-softmax scores, float32
    predicted_class: int
    expected_class: int | None
    maps: dict[int, list[np.ndarray]] = field(default_factory=dict)
    activation_shapes: list[tuple[int, ...]] = field(default_factory=list)  # (T', H', W', C')


class FusedGradCam:
    """Compiles the fused Grad-CAM graph once for a probe, method and pooling.

    `probe(x)` must return `(activations: list of (1,T',H',W',C') tensors, logits: (1, N))` from
    a single forward pass, usable inside a `tf.function` (gradcam3d.loading.build_probe).
    `pooling` is checked by `method_pooling`; `self.pooling` is what the method really uses
    (None for the element-wise methods).
    """

    _traced_shapes: list[tuple[int, ...]]  # set while tracing (in `_run`) and reset in __init__

    def __init__(
        self, *, probe: Callable[[Any], Any], method: str = "gradcam", pooling: str | None = "global"
    ) -> None:
        pooling = method_pooling(method=method, pooling=pooling)  # validates both
        tf = import_tensorflow()

        self.method = method
        self.pooling = pooling
        self._cam_function = CAM_METHODS[method]  # the registry: one small function per method
        self._probe = probe
        self._traced_shapes = []
        # autograph=False: nothing here (nor in Keras 3 layers) branches on tensor values, and
        # AutoGraph's source-to-source conversion of every function it meets was about half
        # of the tracing time.
        self._with_expected = tf.function(
            lambda x, e: self._run(x, e, with_expected=True), reduce_retracing=True, autograph=False
        )
        self._predicted_only = tf.function(
            lambda x: self._run(x, None, with_expected=False), reduce_retracing=True, autograph=False
        )

    def _run(self, x: Any, expected: Any, *, with_expected: bool) -> tuple[Any, ...]:
        """The traced graph: (scores, predicted class, the predicted class's maps per layer,
        then, `with_expected`, the expected class's)."""
        tf = import_tensorflow()
        # The probe's Conv3D and MaxPool3D ops get fast gradients (gradcam3d.fastgrad):
        # for strides 1, dilations 1 and odd kernels, a forward conv with the flipped
        # kernel, ~4x cheaper here than Conv3DBackpropInputV2; non-overlapping pools a
        # mask; other convs and pools keep TF's own.
        with activation_only_conv3d_gradients():
            activations, logits = self._probe(x)
        activations = list(activations)
        # Static shapes are known while tracing; remember them for the manifest.
        self._traced_shapes = [tuple(-1 if d is None else int(d) for d in a.shape[1:]) for a in activations]
        scores = logits[0]
        predicted = tf.argmax(scores, output_type=tf.int32)
        predicted_score = tf.gather(scores, predicted)
        predicted_maps = self._maps_for_target(predicted_score, activations)
        if not with_expected:
            return (scores, predicted, *predicted_maps)
        # Unconditional (no tf.cond): inside a cond branch the second backward pass escapes
        # Grappler's whole-graph optimisation and ran 3x slower here; when the expected
        # class equals the predicted one its maps are simply dropped.
        expected_maps = self._maps_for_target(tf.gather(scores, expected), activations)
        return (scores, predicted, *predicted_maps, *expected_maps)

    def _maps_for_target(self, target: Any, activations: Sequence[Any]) -> list[Any]:
        """One float32 map per layer, for the score `target`, inside the traced graph."""
        tf = import_tensorflow()
        # tf.gradients on the traced graph (not a GradientTape: the tape looks gradients
        # up by op type and ignores the Conv3D override in `_run`). It builds only the ops
        # between the activations and the target: no weight gradient, no input gradient.
        gradients = tf.gradients(target, list(activations))
        maps = []
        for activation, gradient in zip(activations, gradients):
            if gradient is None:  # the layer does not reach the logits: no evidence at all
                gradient = tf.zeros_like(activation)
            # The weighted channel sum cancels heavily (positive and negative weights):
            # in float64 it costs nothing next to the backward pass and keeps the map
            # within float32 rounding of the exact formula.
            activation64 = tf.cast(activation, tf.float64)
            gradient64 = tf.cast(gradient, tf.float64)
            maps.append(tf.cast(self._cam_function(activation64, gradient64, self.pooling), tf.float32))
        return maps

    def trace(self, x: np.ndarray, *, expected_class: int | None = None) -> None:
        """Build the graph now (tracing costs more than running on small models), for timing."""
        self.concrete_function(x, expected_class=expected_class)

    def concrete_function(self, x: np.ndarray, *, expected_class: int | None = None) -> Any:
        """The traced graph for this input shape (`.graph.get_operations()` lists its ops)."""
        tf = import_tensorflow()

        x_tensor = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        if expected_class is None:
            return self._predicted_only.get_concrete_function(x_tensor)
        return self._with_expected.get_concrete_function(
            x_tensor, tf.constant(int(expected_class), dtype=tf.int32)
        )

    def __call__(self, x: np.ndarray, *, expected_class: int | None = None) -> FusedCamResult:
        tf = import_tensorflow()

        x_tensor = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        if expected_class is None:
            outputs = self._predicted_only(x_tensor)
        else:
            outputs = self._with_expected(x_tensor, tf.constant(int(expected_class), dtype=tf.int32))
        scores = outputs[0].numpy().astype(np.float32)
        predicted = int(outputs[1].numpy())
        maps_flat = [np.asarray(m.numpy(), dtype=np.float32) for m in outputs[2:]]
        layer_count = len(maps_flat) if expected_class is None else len(maps_flat) // 2
        result = FusedCamResult(
            logits=scores,
            predicted_class=predicted,
            expected_class=expected_class,
            activation_shapes=list(self._traced_shapes),
        )
        result.maps[predicted] = maps_flat[:layer_count]
        if expected_class is not None and expected_class != predicted:
            result.maps[int(expected_class)] = maps_flat[layer_count:]
        return result


def compute_cams(
    model: Any,
    x: np.ndarray,
    *,
    layers: Sequence[str] | None = None,
    expected_class: int | None = None,
    method: str = "gradcam",
    pooling: str | None = "global",
) -> FusedCamResult:
    """Raw CAMs of one input `x` (1, T, H, W, C) for a loaded Keras model, in one fused run.

    `layers`: full paths of Conv3D layers (default: every one, in model order). The maps are
    for the predicted class and, when `expected_class` is given and differs, for it too:
    `result.maps[class][layer position]`, float32 (T', H', W'), unnormalised. Compiles the
    graph on each call; to explain many inputs with one model, keep a `FusedGradCam`.
    """
    from gradcam3d.loading import build_probe, conv3d_layer_paths

    probe = build_probe(model, list(layers) if layers is not None else conv3d_layer_paths(model))
    return FusedGradCam(probe=probe, method=method, pooling=pooling)(x, expected_class=expected_class)


# ---------------------------------------------------------------------------------------------
# Upsampling and display normalisation (NumPy, deterministic)


def _linear_resize_matrix(*, source: int, target: int) -> np.ndarray:
    """(target, source) matrix of 1-D linear interpolation with half-pixel centres.

    The same convention as cv2.resize / tf.image.resize(bilinear): a feature map cell covers a
    block of input positions, so sample at cell centres and clamp at the borders.
    """
    matrix = np.zeros((target, source), dtype=np.float64)
    if source == 1:
        matrix[:, 0] = 1.0
        return matrix
    positions = (np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5
    positions = np.clip(positions, 0.0, source - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, source - 1)
    upper_weight = positions - lower
    rows = np.arange(target)
    np.add.at(matrix, (rows, lower), 1.0 - upper_weight)
    np.add.at(matrix, (rows, upper), upper_weight)
    return matrix


def upsample_trilinear(raw_map: np.ndarray, *, size: tuple[int, int, int]) -> np.ndarray:
    """Trilinear upsampling of a (T', H', W') map to (T, H, W), separable and vectorised.

    Linear interpolation of a non-negative map stays non-negative, and zeros stay zeros.
    """
    raw_map = np.asarray(raw_map, dtype=np.float64)
    if raw_map.ndim != 3:
        raise ValueError(f"expected a (T, H, W) map, got shape {raw_map.shape}")
    upsampled = raw_map
    # An axis already at its target size has the identity matrix, whose product is exact:
    # skipping it gives the same bytes (and early layers are often full size).
    for subscripts, source, target in (
        ("ta,abc->tbc", raw_map.shape[0], size[0]),
        ("hb,tbc->thc", raw_map.shape[1], size[1]),
        ("wc,thc->thw", raw_map.shape[2], size[2]),
    ):
        if source != int(target):
            upsampled = np.einsum(
                subscripts, _linear_resize_matrix(source=source, target=int(target)), upsampled
            )
    return upsampled.astype(np.float32)


def normalise_for_display(heat: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] by its own maximum; an all-zero (or non-finite) map stays zero."""
    heat = np.asarray(heat, dtype=np.float32)
    heat = np.where(np.isfinite(heat), heat, 0.0).astype(np.float32)
    peak = float(heat.max()) if heat.size else 0.0
    if peak <= 0.0:
        return np.zeros_like(heat, dtype=np.float32)
    return np.clip(heat / peak, 0.0, 1.0).astype(np.float32)


def temporal_importance(upsampled_map: np.ndarray) -> list[float]:
    """Mean raw heat per frame of a (T, H, W) map, raw scale (comparable across layers)."""
    return [float(v) for v in np.asarray(upsampled_map, dtype=np.float64).mean(axis=(1, 2))]
