"""Fill the history's denormalised columns (`method`, `confidence`, `is_correct`) of the
analyses that existed before them, from their `params` and `predictions`, in batches."""

from __future__ import annotations

import math
from typing import Any

from django.db import migrations

BATCH = 500


def _confidence(predictions: Any, predicted: Any) -> float | None:
    # A copy of analyses.runs.state.prediction_confidence: a migration must not import app code
    # that may change later.
    if not isinstance(predictions, dict) or not isinstance(predicted, int) or predicted < 0:
        return None
    probabilities = predictions.get("probabilities")
    if not isinstance(probabilities, list) or predicted >= len(probabilities):
        return None
    value = probabilities[predicted]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fill(apps: Any, schema_editor: Any) -> None:
    Analysis = apps.get_model("analyses", "Analysis")
    rows = Analysis.objects.only("pk", "params", "predictions", "predicted_class", "expected_class", "status")
    batch = []
    for analysis in rows.order_by("pk").iterator(chunk_size=BATCH):
        analysis.method = str((analysis.params or {}).get("method") or "")[:16]
        if analysis.status == "succeeded" and analysis.predicted_class is not None:
            analysis.confidence = _confidence(analysis.predictions, analysis.predicted_class)
            analysis.is_correct = (
                None
                if analysis.expected_class is None
                else analysis.expected_class == analysis.predicted_class
            )
        batch.append(analysis)
        if len(batch) >= BATCH:
            Analysis.objects.bulk_update(batch, ["method", "confidence", "is_correct"])
            batch = []
    if batch:
        Analysis.objects.bulk_update(batch, ["method", "confidence", "is_correct"])


class Migration(migrations.Migration):
    dependencies = [("analyses", "0005_history_columns_and_indexes")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
