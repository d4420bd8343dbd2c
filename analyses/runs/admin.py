"""Admin for analyses: only the title and the team are editable (the rest is the run's record)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from analyses.admin_support import ServicesOnlyMixin
from analyses.runs.models import Analysis, Verification
from analyses.runs.services import analysis_share_problem


class AnalysisAdminForm(forms.ModelForm):
    """The admin may share an analysis only as the pages may: with a team that sees both inputs."""

    class Meta:
        model = Analysis
        fields = ("title", "team")

    def clean_team(self) -> Any:
        team = self.cleaned_data.get("team")
        if team is not None and self.instance.pk is not None:
            problem = analysis_share_problem(
                classifier=self.instance.classifier, video=self.instance.video, team=team
            )
            if problem:
                raise forms.ValidationError(problem)
        return team


@admin.register(Analysis)
class AnalysisAdmin(ServicesOnlyMixin, admin.ModelAdmin):
    form = AnalysisAdminForm
    list_display = (
        "__str__",
        "status",
        "progress_percent",
        "owner",
        "team",
        "classifier",
        "video",
        "predicted_class",
        "expected_class",
        "attempts",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "team", "created_at", "cancel_requested")
    search_fields = (
        "title",
        "code",
        "owner__username",
        "classifier__name",
        "video__name",
        "error_message",
        "task_id",
    )
    list_select_related = ("owner", "team", "classifier", "video")
    date_hierarchy = "created_at"
    # Only the descriptive fields are editable: the rest is the run's record or state that
    # the worker and the reaper own (an edit to status, lease or attempts would corrupt a run).
    editable_fields = ("title", "team")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields if field.name not in self.editable_fields]

    @admin.display(description="Progress", ordering="progress")
    def progress_percent(self, obj: Analysis) -> str:
        return f"{obj.progress * 100:.0f}%"


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin):
    """Verifications are the worker's record: listed and read here, never added, changed or
    deleted (a verdict is also an audit event)."""

    list_display = ("__str__", "analysis", "requested_by", "status", "created_at", "finished_at")
    list_filter = ("status",)
    list_select_related = ("analysis", "requested_by")
    search_fields = ("analysis__title", "requested_by__username")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
