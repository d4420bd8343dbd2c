"""The comparison page's presentation: authorised columns turned into what the template shows.

`comparison_context` takes columns that were ALREADY authorised (by a selector, or later by a
share token) and a function naming each result file, so every page that shows a comparison
(the logged-in page, a share-link page) renders it the same way with its own checked file
URLs. Pure functions: no request, no database writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from analyses.compare.selectors import Column
from analyses.compare.services import difference_unavailable_reason
from analyses.runs.presentation import (
    CURVE_COLOURS,
    CURVE_HEIGHT,
    CURVE_PAD,
    CURVE_WIDTH,
    FileUrl,
    result_context,
)

LETTERS = "ABCD"
DifferencePayload = Callable[[Column, Column], "dict[str, Any] | None"]


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _timeline(manifest: dict[str, Any], *, frames: int) -> list[float]:
    """Source timestamps of the sampled frames (seconds); frame numbers when the manifest has none."""
    timestamps = [float(value) for value in (manifest.get("preprocess") or {}).get("timestamps") or []]
    return timestamps if len(timestamps) == frames and frames else [float(index) for index in range(frames)]


def _column_entry(position: int, column: Column, *, file_url: FileUrl) -> dict[str, Any]:
    analysis = column.analysis
    entry: dict[str, Any] = {
        "position": position,
        "letter": LETTERS[position],
        "analysis": analysis,
        "ready": column.ready,
        "layer": column.layer_name,
        "layer_short": _short(column.layer_name),
        "layer_choices": [
            {"position": index, "name": name, "short": _short(name), "selected": name == column.layer_name}
            for index, name in enumerate(column.layers)
        ],
        "class_index": column.class_index,
        "value": column.value,
    }
    if not column.ready:
        return entry
    result = result_context(analysis, file_url=file_url)
    layer = next((item for item in result["layers"] if item["name"] == column.layer_name), None) or {}
    manifest = result["manifest"]
    frames = int(result["player"]["frames"] or len(layer.get("images") or []))
    entry.update(
        {
            "video_url": layer.get("video_url", ""),
            "preprocessed_url": result["preprocessed_url"],
            "images": [image["url"] for image in layer.get("images") or []],
            "inference": layer.get("inference") or [],
            "show_inference": bool(result["show_inference"] and layer.get("inference")),
            "legend_url": result["legend_url"],
            "top_k": result["top_k"],
            "predicted_label": result["predicted_label"],
            "expected_label": result["expected_label"],
            "correct": result["correct"],
            "probability": result["predicted_probability"],
            "param_rows": result["param_rows"],
            "fps": float(result["player"]["fps"] or 4.0),
            "frames": frames,
            "timestamps": _timeline(manifest, frames=frames),
            "source_frames": list(result["player"]["source_frames"]),
            "curve": _curve_values(
                manifest, layer_name=column.layer_name, predicted=analysis.predicted_class
            ),
        }
    )
    return entry


def _curve_values(manifest: dict[str, Any], *, layer_name: str, predicted: int | None) -> list[float]:
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and layer.get("name") == layer_name and predicted is not None:
            values = (layer.get("temporal_importance") or {}).get(str(predicted)) or []
            return [float(value) if math.isfinite(float(value)) else 0.0 for value in values]
    return []


def _alignment(entries: list[dict[str, Any]]) -> str:
    """ "frame" when every column has as many frames at the same fps (frame i beside frame i),
    else "timestamp" (each column shows its frame nearest to the leader's source time)."""
    ready = [entry for entry in entries if entry["ready"]]
    same = len({(entry["frames"], entry["fps"]) for entry in ready}) <= 1
    return "frame" if same else "timestamp"


def _differs(values: Sequence[Any]) -> bool:
    return len({str(value) for value in values}) > 1


def _fact_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def fact(label: str, values: list[Any]) -> dict[str, Any]:
        return {"label": label, "values": values, "differs": _differs(values)}

    ready = all(entry["ready"] for entry in entries)
    rows = [
        fact("Classifier", [entry["analysis"].classifier.name for entry in entries]),
        fact("Video", [entry["analysis"].video.name for entry in entries]),
        fact("Layer", [entry["layer_short"] or "—" for entry in entries]),
    ]
    if ready:
        rows += [
            fact("Predicted class", [entry["predicted_label"] for entry in entries]),
            fact("Expected class", [entry["expected_label"] or "not given" for entry in entries]),
            fact(
                "Probability",
                [
                    "—" if entry["probability"] is None else f"{float(entry['probability']):.3f}"
                    for entry in entries
                ],
            ),
            fact("Frames", [f"{entry['frames']} at {entry['fps']:g} fps" for entry in entries]),
        ]
    return rows


def _param_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every parameter any column has, one value per column ("—" when absent), marked when they differ."""
    labels: list[str] = []
    per_column = []
    for entry in entries:
        rows = dict(entry.get("param_rows") or [])
        per_column.append(rows)
        labels += [label for label in rows if label not in labels]
    table = []
    for label in labels:
        values = [rows.get(label, "—") for rows in per_column]
        table.append({"label": label, "values": values, "differs": _differs(values)})
    return table


def _chart(entries: list[dict[str, Any]], *, alignment: str) -> dict[str, Any] | None:
    """One chart, one curve per column (its layer, predicted class, scaled to its own maximum),
    over source time when the columns align by timestamp, else over frame numbers."""
    curves = [(entry, entry.get("curve") or []) for entry in entries if entry["ready"] and entry.get("curve")]
    if not curves:
        return None
    xs_per = [
        entry["timestamps"][: len(values)]
        if alignment == "timestamp"
        else [float(i) for i in range(len(values))]
        for entry, values in curves
    ]
    low = min(min(xs) for xs in xs_per if xs)
    high = max(max(xs) for xs in xs_per if xs)
    span = (high - low) or 1.0
    inner_w, inner_h = CURVE_WIDTH - 2 * CURVE_PAD, CURVE_HEIGHT - 2 * CURVE_PAD
    lines = []
    for (entry, values), xs in zip(curves, xs_per):
        peak = max((abs(value) for value in values), default=0.0) or 1.0
        points = " ".join(
            f"{CURVE_PAD + (x - low) / span * inner_w:.1f},{CURVE_HEIGHT - CURVE_PAD - value / peak * inner_h:.1f}"
            for x, value in zip(xs, values)
        )
        lines.append(
            {
                "letter": entry["letter"],
                "colour": CURVE_COLOURS[entry["position"] % len(CURVE_COLOURS)],
                "points": points,
            }
        )
    ticks = [
        {
            "x": round(CURVE_PAD + step / 4 * inner_w, 1),
            "label": f"{low + step / 4 * span:.2f} s"
            if alignment == "timestamp"
            else f"{low + step / 4 * span:.0f}",
        }
        for step in range(5)
    ]
    return {
        "curves": lines,
        "ticks": ticks,
        "width": CURVE_WIDTH,
        "height": CURVE_HEIGHT,
        "pad": CURVE_PAD,
        "baseline": CURVE_HEIGHT - CURVE_PAD,
        "right": CURVE_WIDTH - CURVE_PAD,
        "label_y": CURVE_HEIGHT - 8,
        "axis": "source time" if alignment == "timestamp" else "frame",
    }


def _differences(
    columns: list[Column], entries: list[dict[str, Any]], *, difference_payload: DifferencePayload
) -> list[dict[str, Any]]:
    """Column A against each other column: available (with the stored job's state), or why not."""
    pairs = []
    for position in range(1, len(columns)):
        reason = difference_unavailable_reason(column_a=columns[0], column_b=columns[position])
        pairs.append(
            {
                "a": entries[0],
                "b": entries[position],
                "reason": reason,
                "payload": None if reason else difference_payload(columns[0], columns[position]),
            }
        )
    return pairs


def comparison_context(
    *, columns: list[Column], file_url: FileUrl, difference_payload: DifferencePayload
) -> dict[str, Any]:
    """Everything the comparison template shows, for authorised `columns`."""
    entries = [_column_entry(position, column, file_url=file_url) for position, column in enumerate(columns)]
    alignment = _alignment(entries)
    differences = _differences(columns, entries, difference_payload=difference_payload)
    player = {
        "alignment": alignment,
        "columns": [
            {
                "letter": entry["letter"],
                "ready": entry["ready"],
                "fps": entry.get("fps", 4.0),
                "frames": entry.get("frames", 0),
                "timestamps": entry.get("timestamps", []),
                "images": entry.get("images", []),
            }
            for entry in entries
        ],
        "differences": [pair["payload"] for pair in differences if pair["payload"]],
    }
    leader_frames = max(entries[0].get("frames", 0), 1)
    return {
        "columns": entries,
        "column_count": len(entries),
        "all_ready": all(entry["ready"] for entry in entries),
        "alignment": alignment,
        "facts": _fact_rows(entries),
        "params": _param_rows(entries) if all(entry["ready"] for entry in entries) else [],
        "chart": _chart(entries, alignment=alignment),
        "differences": differences,
        "any_inference": any(entry.get("show_inference") for entry in entries),
        "player": player,
        "last_frame": leader_frames - 1,
        "values": [entry["value"] for entry in entries],
    }
