"""The new-analysis / re-run form. It only parses input; `analyses.runs.services` decides.

Which layers and classes are valid depends on the chosen classifier, so those two fields accept
any value of any visible classifier here and the service checks them against the classifier
(its refusals come back as field errors in words).
"""

from __future__ import annotations

from typing import Any, cast

from django import forms

from accounts.models import Team
from accounts.selectors import teams_of
from analyses.library.models import Classifier, Video
from analyses.library.selectors import classifiers_usable_by, videos_usable_by
from analyses.runs.models import Analysis
from analyses.runs.params import (
    AUTO_SCALING,
    COLORMAPS,
    DEFAULT_PARAMS,
    DEFAULT_PREPROCESS,
    ELEMENTWISE_METHODS,
    MAX_FRAME_STRIDE,
    METHODS,
    POOLINGS,
    RESIZE_MODES,
    SCALINGS,
)

BBOX_OTSU = "otsu"
BBOX_THRESHOLD = "threshold"
DEFAULT_FIXED_THRESHOLD = 0.5

_METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
}
_POOLING_LABELS = {
    "global": "Global (one weight per channel, as the original tool)",
    "temporal": "Temporal (weights per frame)",
}
_RESIZE_LABELS = {
    "stretch": "Stretch to the model size",
    "center_crop": "Centre crop",
    "letterbox": "Letterbox",
}
_SCALING_LABELS = {
    AUTO_SCALING: "As the model expects (read from its input layers)",
    "unit": "[0, 1]",
    "symmetric": "[-1, 1]",
    "raw": "0–255 (raw)",
    "mean_std": "(x − mean) / std",
}


def _choices(values: tuple[str, ...], labels: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [(value, (labels or {}).get(value, value)) for value in values]


def _numbers(text: str) -> list[float] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise forms.ValidationError("Give numbers separated by commas, e.g. 0.485, 0.456, 0.406.") from None


class AnalysisForm(forms.Form):
    classifier = forms.ModelChoiceField(
        queryset=Classifier.objects.none(),
        to_field_name="code",
        empty_label="Choose a classifier…",
        label="Classifier",
    )
    video = forms.ModelChoiceField(
        queryset=Video.objects.none(), to_field_name="code", empty_label="Choose a video…", label="Video"
    )
    expected_class = forms.CharField(
        required=False,
        max_length=12,
        label="Expected (true) class",
        help_text="Leave empty if unknown: no inference maps then.",
    )
    layers = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Conv3D layers",
        help_text="None ticked means all of them.",
    )
    method = forms.ChoiceField(choices=_choices(METHODS, _METHOD_LABELS), initial=DEFAULT_PARAMS["method"])
    pooling = forms.ChoiceField(
        choices=_choices(POOLINGS, _POOLING_LABELS),
        initial=DEFAULT_PARAMS["pooling"],
        label="Gradient pooling",
        required=False,
        help_text="Grad-CAM and Grad-CAM++ only: LayerCAM and HiResCAM weight each position by its own gradient.",
    )
    bbox_mode = forms.ChoiceField(
        choices=[
            (BBOX_OTSU, "Otsu's threshold per frame"),
            (BBOX_THRESHOLD, "Fixed fraction of the maximum"),
        ],
        initial=BBOX_OTSU,
        widget=forms.RadioSelect,
        label="Bounding boxes",
    )
    bbox_threshold = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=0.99,
        initial=DEFAULT_FIXED_THRESHOLD,
        label="Fixed threshold",
        help_text="0.01–0.99 of each frame's maximum.",
        widget=forms.NumberInput(attrs={"step": "0.01"}),
    )
    colormap = forms.ChoiceField(choices=_choices(COLORMAPS), initial=DEFAULT_PARAMS["colormap"])
    alpha = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=DEFAULT_PARAMS["alpha"],
        label="Overlay alpha",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    frame_stride = forms.IntegerField(
        min_value=1,
        max_value=MAX_FRAME_STRIDE,
        initial=DEFAULT_PREPROCESS["frame_stride"],
        help_text="Keep every n-th decoded frame.",
    )
    frame_offset = forms.IntegerField(
        min_value=0,
        max_value=MAX_FRAME_STRIDE,
        initial=DEFAULT_PREPROCESS["frame_offset"],
        help_text="First kept frame (0-based); 1 = the 2nd frame, as the original tool.",
    )
    resize_mode = forms.ChoiceField(
        choices=_choices(RESIZE_MODES, _RESIZE_LABELS), initial=DEFAULT_PREPROCESS["resize_mode"]
    )
    scaling = forms.ChoiceField(
        choices=_choices((AUTO_SCALING, *SCALINGS), _SCALING_LABELS),
        initial=DEFAULT_PREPROCESS["scaling"],
        label="Pixel scaling",
    )
    mean = forms.CharField(
        required=False, max_length=200, help_text="Only for (x − mean) / std: one value or one per channel."
    )
    std = forms.CharField(required=False, max_length=200, help_text="Only for (x − mean) / std.")
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), required=False, label="Share with team", empty_label="Only me (private)"
    )
    title = forms.CharField(required=False, max_length=200, help_text="Optional name shown in the list.")

    def __init__(self, *args: Any, user: Any, fixed_analysis: Analysis | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fixed_analysis = fixed_analysis
        classifiers = classifiers_usable_by(user=user).order_by("name")
        videos = videos_usable_by(user=user).order_by("name")
        teams = teams_of(user=user).order_by("name")
        # self.fields holds copies of the fields declared above; the stubs type them as Field.
        cast("forms.ModelChoiceField[Classifier]", self.fields["classifier"]).queryset = classifiers
        cast("forms.ModelChoiceField[Video]", self.fields["video"]).queryset = videos
        cast("forms.ModelChoiceField[Team]", self.fields["team"]).queryset = teams
        known_layers: dict[str, None] = {}
        for classifier in list(classifiers) + ([fixed_analysis.classifier] if fixed_analysis else []):
            for layer in classifier.conv3d_layers or []:
                known_layers[str(layer)] = None
        layers_field = cast(forms.MultipleChoiceField, self.fields["layers"])  # as above
        layers_field.choices = [(layer, layer) for layer in known_layers]
        if fixed_analysis is not None:
            # A re-run keeps the model, the video and the team (analysis_rerun decides the
            # team); only the parameters, the expected class and the title change.
            del self.fields["classifier"]
            del self.fields["video"]
            del self.fields["team"]

    def clean_mean(self) -> list[float] | None:
        return _numbers(self.cleaned_data.get("mean", ""))

    def clean_std(self) -> list[float] | None:
        return _numbers(self.cleaned_data.get("std", ""))

    def clean(self) -> dict[str, Any]:
        super().clean()  # Form.clean returns self.cleaned_data (the stubs allow None)
        cleaned = self.cleaned_data
        if (
            cleaned.get("bbox_mode") == BBOX_THRESHOLD
            and cleaned.get("bbox_threshold") is None
            and "bbox_threshold" not in self.errors
        ):
            self.add_error("bbox_threshold", "Give the fixed threshold (0.01–0.99), or choose Otsu.")
        return cleaned

    # ------------------------------------------------------------------ for the services
    def preprocess_params(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "frame_stride": data["frame_stride"],
            "frame_offset": data["frame_offset"],
            "resize_mode": data["resize_mode"],
            "scaling": data["scaling"],
            "mean": data.get("mean"),
            "std": data.get("std"),
        }

    def analysis_params(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "layers": list(data.get("layers") or []),
            "method": data["method"],
            # The element-wise methods have no pooling; the field may still post its value.
            "pooling": None if data["method"] in ELEMENTWISE_METHODS else (data.get("pooling") or "global"),
            "bbox_threshold": data["bbox_threshold"] if data["bbox_mode"] == BBOX_THRESHOLD else None,
            "colormap": data["colormap"],
            "alpha": data["alpha"],
            "preprocess": self.preprocess_params(),
        }

    def expected_class_value(self) -> str | None:
        value = (self.cleaned_data.get("expected_class") or "").strip()
        return value or None


def _join_numbers(values: Any) -> str:
    if not values:
        return ""
    return ", ".join(f"{float(value):g}" for value in values)


def initial_from_analysis(analysis: Analysis) -> dict[str, Any]:
    """The form's initial values reproducing `analysis` (for a re-run)."""
    params = analysis.params or {}
    preprocess = {**DEFAULT_PREPROCESS, **(params.get("preprocess") or {})}
    threshold = params.get("bbox_threshold")
    return {
        "classifier": analysis.classifier.code,
        "video": analysis.video.code,
        "expected_class": "" if analysis.expected_class is None else str(analysis.expected_class),
        "layers": list(params.get("layers") or []),
        "method": params.get("method", DEFAULT_PARAMS["method"]),
        "pooling": params.get("pooling") or DEFAULT_PARAMS["pooling"],
        "bbox_mode": BBOX_OTSU if threshold is None else BBOX_THRESHOLD,
        "bbox_threshold": DEFAULT_FIXED_THRESHOLD if threshold is None else threshold,
        "colormap": params.get("colormap", DEFAULT_PARAMS["colormap"]),
        "alpha": params.get("alpha", DEFAULT_PARAMS["alpha"]),
        "frame_stride": preprocess["frame_stride"],
        "frame_offset": preprocess["frame_offset"],
        "resize_mode": preprocess["resize_mode"],
        "scaling": preprocess["scaling"],
        "mean": _join_numbers(preprocess.get("mean")),
        "std": _join_numbers(preprocess.get("std")),
        "team": analysis.team_id,
        "title": analysis.title,
    }
