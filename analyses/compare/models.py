"""Comparisons: 2-4 columns side by side, each an analysis (and optionally one of its layers).

"Two layers of one analysis" and "two analyses" are the same thing: a column names an
analysis and, optionally, a layer (by its full name) and a class; without a layer the page
shows the analysis's last selected layer. A comparison is saved only when someone gives it a
title; an unsaved one lives in its URL (`/compare/?a=<code>&a=<code>:<layer>`).

A `ComparisonDifference` is the difference row's job: the signed difference of two columns'
maps, computed by the engine in a sandboxed child (the maps were written by a child that ran an
untrusted model). It belongs to the pair of analyses, not to a comparison, so every comparison
(saved or not) showing the same pair shares one result; it is visible to whoever may see both
analyses.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from analyses.runs.models import Analysis

MIN_COLUMNS = 2
MAX_COLUMNS = 4


class Comparison(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="comparison_owner_created")]

    def __str__(self) -> str:
        return self.title or f"Comparison {str(self.code)[:8]}"


class ComparisonColumn(models.Model):
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="columns")
    position = models.PositiveSmallIntegerField()
    # Deleting an analysis removes its column (the page says a column is gone).
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="+")
    layer_name = models.CharField(max_length=300, blank=True, help_text="Empty: the last selected layer")
    class_index = models.IntegerField(null=True, blank=True, help_text="Empty: the predicted class")

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "position"], name="comparison_column_position")
        ]

    def __str__(self) -> str:
        return f"Column {self.position + 1} of {self.comparison_id}"


class DifferenceStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ComparisonDifference(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    analysis_a = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="+")
    layer_a = models.CharField(max_length=300)
    class_a = models.IntegerField()
    analysis_b = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="+")
    layer_b = models.CharField(max_length=300)
    class_b = models.IntegerField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    status = models.CharField(
        max_length=16, choices=DifferenceStatus.choices, default=DifferenceStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=2)
    lease = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Relative to MEDIA_ROOT; set only once the files are complete.
    results_dir = models.CharField(max_length=300, blank=True)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["analysis_a", "layer_a", "class_a", "analysis_b", "layer_b", "class_b"],
                name="comparison_difference_pair",
            )
        ]

    def __str__(self) -> str:
        return f"Difference {str(self.code)[:8]}"
