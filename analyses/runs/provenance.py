"""The provenance panel of an analysis page and its verifications, as the template shows them.

Pure functions of rows already read (no request, no database query, no writes), like
`analyses.runs.presentation`: what went in (input hashes), how (every parameter as the engine
recorded it, engine and library versions), what came out (the SHA-256 of each layer's raw
maps), and what the latest verifications found.
"""

from __future__ import annotations

import json
from typing import Any

from django.urls import reverse

from analyses.runs.models import Analysis, Verification, VerificationStatus

_INPUT_LABELS = {"model": "Model file", "video": "Original video"}
_OUTCOME_LABELS = {
    "identical": "identical",
    "differs": "differs",
    "inputs_changed": "inputs changed",
}


def _shown(value: Any) -> str:
    """A parameter's value as recorded: text as it is, everything else as JSON (null, true, [..])."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parameter_rows(params: dict[str, Any], *, prefix: str = "") -> list[tuple[str, str]]:
    """Every parameter, nested groups flattened to dotted names ("preprocess.scaling"), in the
    engine's order."""
    rows: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(parameter_rows(value, prefix=f"{name}."))
        else:
            rows.append((name, _shown(value)))
    return rows


def _input_rows(analysis: Analysis, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    recorded = manifest.get("inputs") or {}
    names = [*recorded, *(name for name in (analysis.input_hashes or {}) if name not in recorded)]
    return [
        {
            "name": _INPUT_LABELS.get(str(name), str(name)),
            "sha256": (recorded.get(name) or {}).get("sha256")
            or (analysis.input_hashes or {}).get(name)
            or "",
            "bytes": (recorded.get(name) or {}).get("bytes"),
        }
        for name in names
    ]


def _raw_map_rows(analysis: Analysis, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for record in manifest.get("files") or []:
        if isinstance(record, dict) and record.get("role") == "raw_maps":
            path = str(record.get("path") or "")
            rows.append(
                {
                    "layer": str(record.get("layer") or ""),
                    "path": path,
                    "sha256": str(record.get("sha256") or ""),
                    "bytes": record.get("bytes"),
                    "url": reverse("analyses_run:file", kwargs={"code": analysis.code, "path": path})
                    if path
                    else "",
                }
            )
    return rows


def _relative(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return "0" if value == 0 else f"{float(value):.3g}"


def _class_rows(layer: dict[str, Any], *, classifier: Any) -> list[dict[str, Any]]:
    rows = []
    for entry in layer.get("classes") or []:
        index = entry.get("class")
        mismatch = entry.get("raw_shape_mismatch") or entry.get("upsampled_shape_mismatch")
        rows.append(
            {
                "label": f"{index}: {classifier.label_for(index)}" if isinstance(index, int) else str(index),
                "raw": _relative(entry.get("raw")),
                "upsampled": _relative(entry.get("upsampled")),
                "shape_mismatch": bool(mismatch),
            }
        )
    return rows


def _layer_rows(verdict: dict[str, Any], *, classifier: Any) -> list[dict[str, Any]]:
    return [
        {
            "layer": str(layer.get("layer") or ""),
            "identical": bool(layer.get("identical")),
            "max_relative": _relative(layer.get("max_relative_diff")),
            "problem": str(layer.get("problem") or ""),
            "stored_matches_record": layer.get("stored_matches_record") is not False,
            "classes": _class_rows(layer, classifier=classifier),
        }
        for layer in verdict.get("layers") or []
        if isinstance(layer, dict)
    ]


def verification_payload(verification: Verification) -> dict[str, Any]:
    """What the page polls while a verification runs: its own fields only."""
    verdict = verification.verdict or {}
    analysis_code = verification.analysis.code
    return {
        "code": str(verification.code),
        "status": verification.status,
        "status_label": verification.get_status_display(),
        "stage": verification.stage,
        "progress": int(round(max(0.0, min(1.0, float(verification.progress or 0.0))) * 100)),
        "active": verification.is_active,
        "outcome": str(verdict.get("outcome") or ""),
        "summary": str(verdict.get("summary") or ""),
        "error_message": verification.error_message
        if verification.status == VerificationStatus.FAILED
        else "",
        "status_url": reverse(
            "analyses_run:verification_status",
            kwargs={"code": analysis_code, "verification_code": verification.code},
        ),
    }


def verification_row(verification: Verification, *, classifier: Any) -> dict[str, Any]:
    verdict = verification.verdict or {}
    outcome = str(verdict.get("outcome") or "")
    requester = verification.requested_by
    prediction = verdict.get("prediction") or {}
    return {
        **verification_payload(verification),
        "verification": verification,
        "requested_by": requester.get_username() if requester is not None else "a deleted user",
        "outcome_label": _OUTCOME_LABELS.get(outcome, outcome),
        "layers": _layer_rows(verdict, classifier=classifier),
        "versions_changed": [
            change for change in verdict.get("versions_changed") or [] if isinstance(change, dict)
        ],
        "prediction_changed": bool(prediction.get("changed")),
        "prediction": prediction,
        "changed_inputs": [
            _INPUT_LABELS.get(str(name), str(name)) for name in verdict.get("changed_inputs") or []
        ],
    }


def provenance_context(analysis: Analysis, *, verifications: list[Verification]) -> dict[str, Any]:
    """The provenance panel's data, under one key so it never shadows the result page's."""
    manifest = analysis.manifest or {}
    rows = [verification_row(verification, classifier=analysis.classifier) for verification in verifications]
    active = next((row for row in rows if row["active"]), None)
    return {
        "provenance": {
            "inputs": _input_rows(analysis, manifest),
            "parameters": parameter_rows(manifest.get("params") or {}),
            "versions": [
                (str(name), str(value))
                for name, value in (manifest.get("engine") or analysis.versions or {}).items()
            ],
            "raw_maps": _raw_map_rows(analysis, manifest),
            "schema": manifest.get("schema"),
            "verify_url": reverse("analyses_run:verify", kwargs={"code": analysis.code}),
            "verifications": rows,
            "active_verification": active,
        }
    }
