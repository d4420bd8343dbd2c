"""The result page's presentation: the stored manifest turned into what the template shows.

Pure functions of an analysis row (no request, no database writes), kept out of the views so
that the views only parse, call and render.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse

from analyses.runs.models import Analysis

_TIMING_LABELS = {
    "load": "Load and check the model",
    "trace": "Build the Grad-CAM graph",
    "preprocess": "Preprocess the video (alongside loading)",
    "preprocess_wait": "Wait for preprocessing",
    "gradcam": "Predict and compute Grad-CAM",
    "render": "Render images and videos",
    "render_preprocessed_video": "Encode the preprocessed clip (alongside Grad-CAM)",
    "total": "Total",
    "peak_rss_mb": "Peak memory of the engine (MB)",
}


def _timing_rows(timings: dict[str, Any]) -> list[tuple[str, Any]]:
    """Known stages with their labels, then any other measured key; never "predict", which
    older engines wrote as 0.0 although nothing was measured."""

    def shown(key: str, value: Any) -> str:
        if not isinstance(value, (int, float)):
            return str(value)
        return f"{float(value):.1f} MB" if key.endswith("_mb") else f"{float(value):.3f} s"

    known = [(label, shown(key, timings[key])) for key, label in _TIMING_LABELS.items() if key in timings]
    others = [
        (key, shown(key, value))
        for key, value in timings.items()
        if key not in _TIMING_LABELS and key != "predict"
    ]
    return known + others


CURVE_COLOURS = ("#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#f08c00", "#5c7cfa")
CURVE_WIDTH, CURVE_HEIGHT, CURVE_PAD = 640, 200, 28
_PARAM_LABELS = {
    "method": "Method",
    "pooling": "Gradient pooling",
    "bbox_threshold": "Bounding boxes",
    "colormap": "Colormap",
    "alpha": "Overlay alpha",
    "top_k": "Top-k",
    "video_fps": "Heatmap video fps",
    "image_format": "Image format",
    "inference_frames": "Inference frames",
    "layers": "Layers",
}


def _file_url(analysis: Analysis, path: str) -> str:
    return reverse("analyses_run:file", kwargs={"code": analysis.code, "path": path})


# How a page names an analysis's result file: the checked view by default; a page reached
# another way (a comparison, a share link) passes its own checked view.
FileUrl = Callable[[Analysis, str], str]


def _short_layer_name(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _curve_points(values: list[float], *, frames: int) -> str:
    """SVG polyline points of one curve, normalised to its own maximum (shapes compare)."""
    peak = max((abs(float(value)) for value in values), default=0.0) or 1.0
    span_x = CURVE_WIDTH - 2 * CURVE_PAD
    span_y = CURVE_HEIGHT - 2 * CURVE_PAD
    step = span_x / max(frames - 1, 1)
    return " ".join(
        f"{CURVE_PAD + index * step:.1f},{CURVE_HEIGHT - CURVE_PAD - (float(value) / peak) * span_y:.1f}"
        for index, value in enumerate(values)
    )


def _temporal_chart(manifest: dict[str, Any], *, predicted: int | None) -> dict[str, Any] | None:
    frames = len((manifest.get("preprocess") or {}).get("source_frame_indices") or [])
    curves = []
    for position, layer in enumerate(manifest.get("layers") or []):
        values = (
            ((layer.get("temporal_importance") or {}).get(str(predicted)) or [])
            if predicted is not None
            else []
        )
        if not values:
            continue
        curves.append(
            {
                "layer": layer.get("name", ""),
                "short": _short_layer_name(str(layer.get("name", ""))),
                "colour": CURVE_COLOURS[position % len(CURVE_COLOURS)],
                "points": _curve_points(values, frames=frames or len(values)),
            }
        )
    if not curves:
        return None
    frames = frames or 1
    step = (CURVE_WIDTH - 2 * CURVE_PAD) / max(frames - 1, 1)
    every = max(1, frames // 8)
    ticks = [{"x": round(CURVE_PAD + index * step, 1), "label": index} for index in range(0, frames, every)]
    return {
        "curves": curves,
        "width": CURVE_WIDTH,
        "height": CURVE_HEIGHT,
        "pad": CURVE_PAD,
        "ticks": ticks,
        "baseline": CURVE_HEIGHT - CURVE_PAD,
        "top": CURVE_PAD,
        "right": CURVE_WIDTH - CURVE_PAD,
        "label_y": CURVE_HEIGHT - 8,
    }


def _param_rows(params: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, label in _PARAM_LABELS.items():
        if key not in params:
            continue
        value = params[key]
        if key == "bbox_threshold":
            value = (
                "Otsu's threshold per frame" if value is None else f"fixed, {float(value):g} of the maximum"
            )
        elif key == "pooling" and value is None:
            value = "not used by this method (element-wise weights)"
        elif key == "layers":
            value = "all Conv3D layers" if not value else ", ".join(map(str, value))
        rows.append((label, str(value)))
    for key, value in (params.get("preprocess") or {}).items():
        if value is not None:
            rows.append(
                (
                    f"Preprocess: {key.replace('_', ' ')}",
                    ", ".join(map(str, value)) if isinstance(value, list) else str(value),
                )
            )
    return rows


def _top_k_rows(
    prediction: dict[str, Any], *, classifier: Any, predicted: int | None, expected: int | None
) -> list[dict[str, Any]]:
    rows = []
    for entry in prediction.get("top_k") or []:
        index = int(entry.get("class", -1))
        probability = float(entry.get("probability") or 0.0)
        rows.append(
            {
                "class": index,
                "label": entry.get("label") or classifier.label_for(index),
                "probability": probability,
                "percent": round(probability * 100, 2),
                "width": max(0.5, round(probability * 100, 2)),
                "is_predicted": index == predicted,
                "is_expected": index == expected,
            }
        )
    return rows


def _empty_layer(name: str, *, index: int) -> dict[str, Any]:
    return {
        "name": name,
        "short": _short_layer_name(name),
        "index": index,
        "video_url": "",
        "images": [],
        "inference": [],
        "curve_url": "",
        "raw_url": "",
    }


def _add_layer_file(
    layer: dict[str, Any],
    *,
    role: Any,
    frame: Any,
    url: str,
    timestamps: list[float],
    source_indices: list[int],
) -> None:
    if role == "heatmap_video":
        layer["video_url"] = url
    elif role == "heatmap_image" and frame is not None:
        layer["images"].append(
            {
                "frame": int(frame),
                "url": url,
                "timestamp": timestamps[int(frame)] if int(frame) < len(timestamps) else None,
                "source_frame": source_indices[int(frame)] if int(frame) < len(source_indices) else None,
            }
        )
    elif role == "inference_map" and frame is not None:
        layer["inference"].append({"frame": int(frame), "url": url})
    elif role == "temporal_curve":
        layer["curve_url"] = url
    elif role == "raw_maps":
        layer["raw_url"] = url


def _result_files(
    analysis: Analysis,
    manifest: dict[str, Any],
    *,
    timestamps: list[float],
    source_indices: list[int],
    file_url: FileUrl = _file_url,
) -> tuple[list[dict[str, Any]], str, str]:
    """(layers in the model's order with their files, preprocessed clip URL, legend URL)."""
    layers: dict[str, dict[str, Any]] = {}
    for position, name in enumerate((manifest.get("model") or {}).get("selected_layers") or []):
        layers[str(name)] = _empty_layer(str(name), index=position)
    preprocessed_url = legend_url = ""
    for record in manifest.get("files") or []:
        role, path, layer_name = record.get("role"), str(record.get("path") or ""), record.get("layer")
        url = file_url(analysis, path)
        if role == "preprocessed_video":
            preprocessed_url = url
        elif role == "inference_legend":
            legend_url = url
        elif layer_name:
            layer = layers.setdefault(str(layer_name), _empty_layer(str(layer_name), index=len(layers)))
            _add_layer_file(
                layer,
                role=role,
                frame=record.get("frame"),
                url=url,
                timestamps=timestamps,
                source_indices=source_indices,
            )
    layer_list = sorted(layers.values(), key=lambda layer: layer["index"])
    for layer in layer_list:
        layer["images"].sort(key=lambda image: image["frame"])
        layer["inference"].sort(key=lambda image: image["frame"])
        count = len(layer["inference"])
        for position, image in enumerate(layer["inference"]):
            image["position"] = (
                ("start", "middle", "end")[position] if count == 3 else f"frame {image['frame']}"
            )
    return layer_list, preprocessed_url, legend_url


def _player(
    manifest: dict[str, Any],
    layer_list: list[dict[str, Any]],
    *,
    timestamps: list[float],
    source_indices: list[int],
) -> dict[str, Any]:
    """What the synchronized frame player (static/js) needs."""
    return {
        "fps": float((manifest.get("params") or {}).get("video_fps") or 4.0),
        "frames": len(source_indices) or max((len(layer["images"]) for layer in layer_list), default=0),
        "timestamps": timestamps,
        "source_frames": source_indices,
        "layers": [
            {
                "name": layer["name"],
                "short": layer["short"],
                "images": [image["url"] for image in layer["images"]],
            }
            for layer in layer_list
        ],
    }


def _predicted_probability(prediction: dict[str, Any], *, predicted: int | None) -> float | None:
    probabilities = prediction.get("probabilities") or []
    return probabilities[predicted] if predicted is not None and predicted < len(probabilities) else None


def result_context(
    analysis: Analysis, *, file_url: FileUrl = _file_url, zip_url: str | None = None
) -> dict[str, Any]:
    """Everything the result page shows, read from the stored manifest; `file_url` and `zip_url`
    address the result files (by default the analysis's own checked views; a share link's page
    passes its own, equally checked)."""
    manifest = analysis.manifest or {}
    classifier = analysis.classifier
    prediction = manifest.get("prediction") or {}
    preprocess = manifest.get("preprocess") or {}
    predicted = analysis.predicted_class
    expected = analysis.expected_class
    timestamps = [float(value) for value in preprocess.get("timestamps") or []]
    source_indices = [int(value) for value in preprocess.get("source_frame_indices") or []]
    layer_list, preprocessed_url, legend_url = _result_files(
        analysis, manifest, timestamps=timestamps, source_indices=source_indices, file_url=file_url
    )
    inputs = manifest.get("inputs") or {}
    return {
        "manifest": manifest,
        "prediction": prediction,
        "correct": prediction.get("correct"),
        "predicted_label": classifier.label_for(predicted) if predicted is not None else "",
        "expected_label": classifier.label_for(expected) if expected is not None else "",
        "predicted_probability": _predicted_probability(prediction, predicted=predicted),
        "top_k": _top_k_rows(prediction, classifier=classifier, predicted=predicted, expected=expected),
        "chart": _temporal_chart(manifest, predicted=predicted),
        "layers": layer_list,
        "preprocessed_url": preprocessed_url,
        "legend_url": legend_url,
        "show_inference": analysis.is_wrong_prediction and any(layer["inference"] for layer in layer_list),
        "player": _player(manifest, layer_list, timestamps=timestamps, source_indices=source_indices),
        "param_rows": _param_rows(manifest.get("params") or analysis.params or {}),
        "timings": _timing_rows({**(manifest.get("timings") or {}), **(analysis.timings or {})}),
        "versions": [
            (key, value) for key, value in (manifest.get("engine") or analysis.versions or {}).items()
        ],
        "hashes": [
            (name, (record or {}).get("sha256"), (record or {}).get("bytes"))
            for name, record in inputs.items()
        ],
        "file_count": len(manifest.get("files") or []) + 1,
        "manifest_url": file_url(analysis, "manifest.json"),
        "zip_url": zip_url or reverse("analyses_run:zip", kwargs={"code": analysis.code}),
    }


def history_rows(analyses: Any) -> list[dict[str, Any]]:
    """One row per analysis of a history page: the analysis and the words its columns show."""
    rows = []
    for analysis in analyses:
        classifier = analysis.classifier
        rows.append(
            {
                "analysis": analysis,
                "percent": int(round(max(0.0, min(1.0, float(analysis.progress or 0.0))) * 100)),
                "predicted_label": classifier.label_for(analysis.predicted_class)
                if analysis.predicted_class is not None
                else "",
                "expected_label": classifier.label_for(analysis.expected_class)
                if analysis.expected_class is not None
                else "",
                "confidence_percent": None
                if analysis.confidence is None
                else round(max(0.0, min(1.0, analysis.confidence)) * 100, 1),
                "has_poster": bool(analysis.video.poster),
            }
        )
    return rows
