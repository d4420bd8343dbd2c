"""Analyses: one run of a classifier on a video, with its run state and its results; and the
verifications of past analyses."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from analyses.library.models import Classifier, OwnedModel, Video


class AnalysisStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (AnalysisStatus.QUEUED, AnalysisStatus.RUNNING)


class Analysis(OwnedModel):
    classifier = models.ForeignKey(Classifier, on_delete=models.PROTECT, related_name="analyses")
    video = models.ForeignKey(Video, on_delete=models.PROTECT, related_name="analyses")
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reruns",
        help_text="The analysis this one re-runs with changed parameters",
    )
    title = models.CharField(max_length=200, blank=True)
    expected_class = models.IntegerField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)

    status = models.CharField(
        max_length=16, choices=AnalysisStatus.choices, default=AnalysisStatus.QUEUED, db_index=True
    )
    stage = models.CharField(max_length=100, blank=True)
    progress = models.FloatField(default=0.0)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=2)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    # "<host>:<pid>:<process start ticks>" of the worker process orchestrating the run, so the
    # reaper can tell at once that a run's worker died (same host) instead of waiting for the
    # heartbeat to go stale.
    worker_lease = models.CharField(max_length=200, blank=True)

    predicted_class = models.IntegerField(null=True, blank=True)
    predictions = models.JSONField(default=dict, blank=True)
    # Denormalised from `params` and `predictions` so the history filters and sorts in SQL:
    # `method` copies params["method"] (set on save: params never change after creation);
    # `confidence` (the predicted class's probability) and `is_correct` (predicted ==
    # expected; None without an expected class) are written by state.analysis_publish.
    method = models.CharField(max_length=16, blank=True, default="")
    confidence = models.FloatField(null=True, blank=True)
    is_correct = models.BooleanField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    versions = models.JSONField(default=dict, blank=True)
    input_hashes = models.JSONField(default=dict, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    # Relative to MEDIA_ROOT; holds only finished results (written elsewhere, renamed in).
    results_dir = models.CharField(max_length=300, blank=True)
    results_bytes = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "analyses"
        # What the history (analyses.runs.filters) filters on, each with the default order.
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="analysis_owner_created"),
            models.Index(fields=["team", "-created_at"], name="analysis_team_created"),
            models.Index(fields=["classifier", "-created_at"], name="analysis_clf_created"),
            models.Index(fields=["video", "-created_at"], name="analysis_video_created"),
            models.Index(fields=["status", "-created_at"], name="analysis_status_created"),
            models.Index(fields=["method", "-created_at"], name="analysis_method_created"),
            models.Index(fields=["is_correct", "-created_at"], name="analysis_correct_created"),
            models.Index(fields=["predicted_class"], name="analysis_predicted"),
            models.Index(fields=["expected_class"], name="analysis_expected"),
            models.Index(fields=["-confidence"], name="analysis_confidence"),
            models.Index(fields=["-created_at"], name="analysis_created"),
        ]

    def __str__(self) -> str:
        return self.title or f"Analysis {str(self.code)[:8]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.method = str((self.params or {}).get("method") or "")[:16]
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "params" in update_fields:
            kwargs["update_fields"] = {*update_fields, "method"}
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_wrong_prediction(self) -> bool:
        return (
            self.expected_class is not None
            and self.predicted_class is not None
            and self.expected_class != self.predicted_class
        )


class VerificationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"  # the verdict says identical, differs or inputs changed
    FAILED = "failed", "Failed"  # no verdict: the re-run could not be done


ACTIVE_VERIFICATION_STATUSES = (VerificationStatus.QUEUED, VerificationStatus.RUNNING)


class Verification(models.Model):
    """One check of a past analysis: re-run in the worker on its stored inputs and parameters,
    into a scratch folder, and its raw maps compared with the stored ones (analyses.runs.verification).

    It changes nothing in the analysis. The verdict is kept here (for the page) and in the audit
    trail (action "analysis.verified").
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="verifications")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=VerificationStatus.choices, default=VerificationStatus.QUEUED, db_index=True
    )
    stage = models.CharField(max_length=100, blank=True)
    progress = models.FloatField(default=0.0)
    verdict = models.JSONField(default=dict, blank=True)
    error_message = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    # "<host>:<pid>:<process start ticks>" of the worker process running it (as Analysis.worker_lease).
    worker_lease = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One verification at a time per analysis, even when two requests race.
            models.UniqueConstraint(
                fields=["analysis"],
                condition=models.Q(status__in=["queued", "running"]),
                name="verification_one_active_per_analysis",
            )
        ]
        indexes = [models.Index(fields=["requested_by", "status"], name="verification_user_status")]

    def __str__(self) -> str:
        return f"Verification {str(self.code)[:8]} of {self.analysis_id}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_VERIFICATION_STATUSES
