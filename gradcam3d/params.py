"""`AnalysisParams`: every parameter of an analysis, typed, with its default and its checks.

The defaults are the command line's (`python -m gradcam3d analyze`). `from_dict`/`to_dict` are
the JSON form the web side sends in a worker job's "params" and finds in a manifest's "params"
(docs/engine-contract.md): unknown keys are refused, and a bad value is refused with a sentence
(`Refusal`, code "bad_params") that says what is allowed.

Checks that need the model (are the layers its Conv3D layers? does the expected class exist?)
are run_analysis's; the preprocessing scaling may be "auto" until the model's inspection picks
one (`with_scaling`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gradcam3d.cam import method_pooling
from gradcam3d.errors import Refusal
from gradcam3d.ffmpeg import VideoLimits
from gradcam3d.preprocess import SCALING_AUTO, PreprocessParams
from gradcam3d.render import COLORMAPS

IMAGE_FORMATS = ("png", "jpeg")
INFERENCE_FRAMES = ("key", "all")  # key = start/middle/end frames, all = every frame


def _refuse(message: str) -> None:
    raise Refusal(message, code="bad_params")


def _number(name: str, value: Any, *, low: float, high: float, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _refuse(f"The parameter '{name}' must be a number.")
    if integer and int(value) != value:
        _refuse(f"The parameter '{name}' must be a whole number.")
    if not low <= value <= high:
        _refuse(f"The parameter '{name}' must be between {low:g} and {high:g}.")
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class AnalysisParams:
    """Every analysis parameter (the field order is the manifest's "params" order)."""

    expected_class: int | None = None  # the true class, if the user knows it
    layers: tuple[str, ...] | None = None  # full paths of the Conv3D layers to explain; None = all
    method: str = "gradcam"  # gradcam | gradcam++ | layercam | hirescam
    # gradcam, gradcam++: global (over T,H,W, the original tool) | temporal (over H,W per t).
    # layercam, hirescam: no pooling, recorded as None ("temporal" is refused for them).
    pooling: str | None = "global"
    bbox_threshold: float | None = None  # None = Otsu per frame; else a fraction of the map's maximum
    min_box_area: int = 1  # smallest connected component (model pixels) that gets a box
    colormap: str = "jet"
    alpha: float = 0.3
    class_labels: tuple[str, ...] | None = None  # index = class
    top_k: int = 5
    video_fps: float = 4.0  # heatmap videos and the preprocessed clip (same rate: they play in sync)
    image_format: str = "png"  # png | jpeg
    inference_frames: str = "key"  # key = start/middle/end frames, all = every frame
    display_min_height: int = 224  # images are upscaled by an integer factor to at least this
    # The scaling defaults to "auto": the one the model's inspection suggests.
    preprocess: PreprocessParams = field(default_factory=lambda: PreprocessParams(scaling=SCALING_AUTO))
    limits: VideoLimits = field(default_factory=VideoLimits)

    def __post_init__(self) -> None:
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        self._check_choices(set_field)
        set_field("alpha", _number("alpha", self.alpha, low=0.0, high=1.0))
        set_field("video_fps", _number("video_fps", self.video_fps, low=0.5, high=60.0))
        set_field("top_k", _number("top_k", self.top_k, low=1, high=1000, integer=True))
        set_field("min_box_area", _number("min_box_area", self.min_box_area, low=1, high=10**6, integer=True))
        set_field(
            "display_min_height",
            _number("display_min_height", self.display_min_height, low=1, high=2160, integer=True),
        )
        if self.bbox_threshold is not None:
            value = _number("bbox_threshold", self.bbox_threshold, low=0.0, high=1.0)
            if value >= 1.0:
                _refuse("The box threshold is a fraction of the maximum heat and must be below 1.")
            set_field("bbox_threshold", value)
        if self.expected_class is not None:
            set_field(
                "expected_class",
                _number("expected_class", self.expected_class, low=0, high=10**9, integer=True),
            )
        set_field("layers", _checked_layers(self.layers))
        set_field("class_labels", _checked_labels(self.class_labels))
        set_field("preprocess", _preprocess_params(self.preprocess))
        set_field("limits", _video_limits(self.limits))

    def _check_choices(self, set_field: Any) -> None:
        try:
            # Recorded as the method really runs: None for the element-wise methods.
            set_field("pooling", method_pooling(method=self.method, pooling=self.pooling))
        except ValueError as exc:
            _refuse(str(exc))
        if self.colormap not in COLORMAPS:
            _refuse(f"Unknown colormap '{self.colormap}'; choose one of {', '.join(sorted(COLORMAPS))}.")
        if self.image_format not in IMAGE_FORMATS:
            _refuse("The image format must be 'png' or 'jpeg'.")
        if self.inference_frames not in INFERENCE_FRAMES:
            _refuse("inference_frames must be 'key' (start, middle, end) or 'all'.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AnalysisParams:
        """From the JSON form (a worker job's "params"); missing keys take their defaults.

        Unknown keys are refused: a misspelt option silently ignored would give a result the
        user did not ask for.
        """
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            _refuse(f"Unknown analysis parameter(s): {', '.join(unknown)}.")
        for nested in ("preprocess", "limits"):
            if not isinstance(data.get(nested) or {}, dict):
                _refuse(f"'{nested}' must be an object of options.")
            data[nested] = dict(data.get(nested) or {})
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, every parameter present (the manifest's "params")."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        values["layers"] = list(self.layers) if self.layers is not None else None
        values["class_labels"] = list(self.class_labels) if self.class_labels is not None else None
        values["preprocess"] = self.preprocess.to_dict()
        values["limits"] = self.limits.to_dict()
        return values

    def with_scaling(self, scaling: str) -> AnalysisParams:
        """The same parameters with the preprocessing scaling chosen (never "auto")."""
        return replace(self, preprocess=self.preprocess.with_scaling(scaling))

    def class_label(self, class_index: int) -> str:
        """The label of a class, or its index as text when it has none."""
        labels = self.class_labels or ()
        if 0 <= class_index < len(labels) and labels[class_index]:
            return str(labels[class_index])
        return str(class_index)


def _checked_layers(layers: Any) -> tuple[str, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers) or not layers:
        _refuse("'layers' must be a non-empty list of Conv3D layer paths.")
    return tuple(dict.fromkeys(layers))  # keep order, drop repeats


def _checked_labels(labels: Any) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, dict):  # {"0": "Basketball"} from a class map
        try:
            size = max(int(key) for key in labels) + 1 if labels else 0
            labels = [str(labels.get(str(i), labels.get(i, "")) or "") for i in range(size)]
        except ValueError:
            _refuse("Class label keys must be class indices.")
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        _refuse("'class_labels' must be a list of labels.")
    return tuple("" if label is None else str(label) for label in labels)


def _preprocess_params(value: PreprocessParams | Mapping[str, Any]) -> PreprocessParams:
    """PreprocessParams from the JSON form; a missing or null scaling means "auto"."""
    if isinstance(value, PreprocessParams):
        return value
    options = dict(value)
    if options.get("scaling") is None:
        options["scaling"] = SCALING_AUTO
    try:
        return PreprocessParams.from_dict(options)
    except (TypeError, ValueError) as exc:
        raise Refusal(f"Bad preprocessing options: {exc}.", code="bad_params") from None


def _video_limits(value: VideoLimits | Mapping[str, Any]) -> VideoLimits:
    if isinstance(value, VideoLimits):
        return value
    try:
        return VideoLimits(**value)
    except (TypeError, ValueError) as exc:
        raise Refusal(f"Bad preprocessing options: {exc}.", code="bad_params") from None
