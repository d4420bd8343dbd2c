"""The parameters of an analysis: defaults, choices and their validation against the classifier.

Parameter choices are in the engine's own parameter schema (gradcam3d.manifest.DEFAULT_PARAMS,
gradcam3d.preprocess.PreprocessParams). They mirror the engine's lists; the web side may not
import gradcam3d, and the engine refuses anything it does not know anyway.
"""

from __future__ import annotations

import math
from typing import Any

from analyses.library.models import Classifier
from analyses.library.selectors import SCALINGS, suggested_scaling

METHODS = ("gradcam", "gradcam++", "layercam", "hirescam")
# LayerCAM and HiResCAM weight every position by its own gradient: gradient pooling does not
# apply to them (the engine records their pooling as None and refuses "temporal").
ELEMENTWISE_METHODS = ("layercam", "hirescam")
POOLINGS = ("global", "temporal")
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot", "parula", "cividis", "bone")
RESIZE_MODES = ("stretch", "center_crop", "letterbox")
# "auto": what the model's own input layers expect (inspection's `suggested_scaling`: a model
# starting with Rescaling(1/255) gets raw 0-255 values, not values divided by 255 twice).
AUTO_SCALING = "auto"
INFERENCE_FRAMES = ("key", "all")
MAX_FRAME_STRIDE = 16

# The original tool's behaviour is the default: Grad-CAM pooled over (T,H,W), Otsu boxes
# (bbox_threshold None), jet at alpha 0.3, every 2nd frame from the 2nd, stretched to the
# model's size, values in [0, 1].
DEFAULT_PARAMS: dict[str, Any] = {
    "method": "gradcam",
    "pooling": "global",
    "bbox_threshold": None,
    "colormap": "jet",
    "alpha": 0.3,
    "top_k": 5,
    "inference_frames": "key",
}
DEFAULT_PREPROCESS: dict[str, Any] = {
    "frame_stride": 2,
    "frame_offset": 1,
    "resize_mode": "stretch",
    "scaling": AUTO_SCALING,
    "mean": None,
    "std": None,
}
PARAM_NAMES = frozenset({"layers", "preprocess", *DEFAULT_PARAMS})


class AnalysisError(Exception):
    """A user-facing refusal: `str(exc)` is a complete sentence; `field` names the bad input."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --------------------------------------------------------------------------- parameters
def _label(name: str) -> str:
    return name.replace("_", " ")


def _shown(value: Any, *, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _choice(*, value: Any, name: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise AnalysisError(
            f"“{_shown(value)}” is not a valid {_label(name)}; choose one of: {', '.join(choices)}.",
            field=name,
        )
    return text


def _number(*, value: Any, name: str, low: float, high: float, integer: bool = False) -> float | int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnalysisError(
            f"The {_label(name)} must be a number, not “{_shown(value)}”.", field=name
        ) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise AnalysisError(
            f"The {_label(name)} must be between {low:g} and {high:g} (got {number:g}).", field=name
        )
    if integer:
        if number != int(number):
            raise AnalysisError(f"The {_label(name)} must be a whole number.", field=name)
        return int(number)
    return number


def _channel_values(*, value: Any, name: str, channels: int, positive: bool) -> list[float] | None:
    if value is None or value == "" or value == []:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, channels):
        raise AnalysisError(f"Give one {name} value or one per channel ({channels}).", field=name)
    numbers = [float(_number(value=item, name=name, low=-1e6, high=1e6)) for item in values]
    if positive and any(number <= 0 for number in numbers):
        raise AnalysisError(f"The {name} values must be positive.", field=name)
    return numbers


def _preprocess_normalised(*, classifier: Classifier, value: Any) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise AnalysisError("The preprocessing options must be a set of named values.", field="preprocess")
    unknown = sorted(set(value) - set(DEFAULT_PREPROCESS))
    if unknown:
        raise AnalysisError(f"Unknown preprocessing option(s): {', '.join(unknown)}.", field=unknown[0])
    merged = {**DEFAULT_PREPROCESS, **value}
    channels = int(classifier.input_shape[-1]) if classifier.input_shape else 3
    normalised = {
        "frame_stride": _number(
            value=merged["frame_stride"], name="frame_stride", low=1, high=MAX_FRAME_STRIDE, integer=True
        ),
        "frame_offset": _number(
            value=merged["frame_offset"], name="frame_offset", low=0, high=MAX_FRAME_STRIDE, integer=True
        ),
        "resize_mode": _choice(value=merged["resize_mode"], name="resize_mode", choices=RESIZE_MODES),
        "scaling": _scaling(classifier=classifier, value=merged["scaling"]),
        "mean": _channel_values(value=merged["mean"], name="mean", channels=channels, positive=False),
        "std": _channel_values(value=merged["std"], name="std", channels=channels, positive=True),
    }
    if normalised["scaling"] == "mean_std" and (normalised["mean"] is None or normalised["std"] is None):
        raise AnalysisError(
            "Scaling by mean and standard deviation needs both the mean and the std.", field="scaling"
        )
    return normalised


def preprocess_params_normalise(*, classifier: Classifier, value: Any) -> dict[str, Any]:
    """The preprocessing options with defaults filled in and "auto" scaling resolved."""
    return _preprocess_normalised(classifier=classifier, value=value)


def _scaling(*, classifier: Classifier, value: Any) -> str:
    chosen = _choice(
        value=value if value not in (None, "") else AUTO_SCALING,
        name="scaling",
        choices=(AUTO_SCALING, *SCALINGS),
    )
    return suggested_scaling(classifier=classifier)[0] if chosen == AUTO_SCALING else chosen


def _pooling(*, method: str, value: Any) -> str | None:
    if method not in ELEMENTWISE_METHODS:
        return _choice(value=value if value not in (None, "") else "global", name="pooling", choices=POOLINGS)
    if value not in (None, "", "global"):
        raise AnalysisError(
            f"{'LayerCAM' if method == 'layercam' else 'HiResCAM'} weights every position by its own "
            "gradient, so gradient pooling does not apply to it: leave pooling at its default.",
            field="pooling",
        )
    return None


def analysis_params_normalise(*, classifier: Classifier, params: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter with defaults filled in, validated against the classifier.

    The result is in the engine's parameter schema (without `expected_class` and
    `class_labels`, which come from the analysis and the classifier when it runs).
    """
    params = dict(params or {})
    unknown = sorted(set(params) - PARAM_NAMES)
    if unknown:
        raise AnalysisError(f"Unknown analysis parameter(s): {', '.join(unknown)}.", field=unknown[0])
    merged = {**DEFAULT_PARAMS, **params}
    available = [str(layer) for layer in classifier.conv3d_layers or []]
    layers = merged.get("layers") or list(available)
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, (list, tuple)):
        raise AnalysisError("The layers must be a list of Conv3D layer names.", field="layers")
    layers = list(dict.fromkeys(str(layer) for layer in layers))
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise AnalysisError(
            f"The model has no Conv3D layer named {', '.join(_shown(name) for name in missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}; its layers are: {', '.join(available)}.",
            field="layers",
        )
    if not layers:
        raise AnalysisError("The model has no Conv3D layer to explain.", field="layers")
    wanted = set(layers)
    method = _choice(value=merged["method"], name="method", choices=METHODS)
    threshold = merged["bbox_threshold"]
    if threshold is not None and threshold != "" and str(threshold).strip().lower() != "otsu":
        threshold = _number(value=threshold, name="bbox_threshold", low=0.01, high=0.99)
    else:
        threshold = None  # Otsu's threshold per frame, as the original tool
    return {
        # Keep the model's order (outermost first) whatever order the user picked them in.
        "layers": [layer for layer in available if layer in wanted],
        "method": method,
        "pooling": _pooling(method=method, value=merged["pooling"]),
        "bbox_threshold": threshold,
        "colormap": _choice(value=merged["colormap"], name="colormap", choices=COLORMAPS),
        "alpha": _number(value=merged["alpha"], name="alpha", low=0.0, high=1.0),
        "top_k": _number(
            value=merged["top_k"], name="top_k", low=1, high=max(1, classifier.num_classes), integer=True
        )
        if merged["top_k"] != DEFAULT_PARAMS["top_k"]
        else min(DEFAULT_PARAMS["top_k"], max(1, classifier.num_classes)),
        "inference_frames": _choice(
            value=merged["inference_frames"], name="inference_frames", choices=INFERENCE_FRAMES
        ),
        "preprocess": _preprocess_normalised(classifier=classifier, value=merged.get("preprocess")),
    }


def expected_class_checked(*, classifier: Classifier, expected_class: Any) -> int | None:
    if expected_class is None or expected_class == "":
        return None
    text = str(expected_class).strip()
    try:
        if len(text) > len(str(classifier.num_classes)) + 1:  # never int() a huge string
            raise ValueError(text)
        value = int(text)
    except (TypeError, ValueError):
        if text.isdigit():
            raise AnalysisError(
                f"The expected class {_shown(text, limit=12)} is out of range: this model has "
                f"{classifier.num_classes} classes, numbered 0 to {classifier.num_classes - 1}.",
                field="expected_class",
            ) from None
        raise AnalysisError(
            f"The expected class must be a class number, not “{_shown(expected_class)}”.",
            field="expected_class",
        ) from None
    if not 0 <= value < classifier.num_classes:
        raise AnalysisError(
            f"The expected class {value} is out of range: this model has {classifier.num_classes} "
            f"classes, numbered 0 to {classifier.num_classes - 1}.",
            field="expected_class",
        )
    return value
