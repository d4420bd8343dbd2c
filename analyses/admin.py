"""Admin for classifiers, videos, analyses and the (read-only) audit trail.

Uploads go through the library pages, which inspect/probe them in a child process; the admin
therefore cannot add classifiers or videos, only look at and edit their descriptive fields.
It cannot delete them either: deleting goes through the services (files removed after commit,
archived instead when analyses use them, audited), which the admin's delete would bypass.
Every edit made here is recorded with `audit_log` like the same edit made on the pages, and
the state the worker owns (status, progress, attempts, lease, cancel flag...) is read-only.
"""
from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.db import models, transaction
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from analyses.audit import audit_log
from analyses.services.analysis import analysis_share_problem
from analyses.models import Analysis, AuditEvent, Classifier, Video


def _plain(value: Any) -> Any:
    """A JSON-able form of a form value, for the audit trail."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)


def _stored_file(field_file: Any, *, size_bytes: int | None = None) -> str:
    """A stored file as its name (and size). Never its `.url`: media has no URL (MEDIA_URL is
    None); files are served only by the library views, which check the same permission as
    their page and which the admin does not bypass."""
    if not field_file:
        return "—"
    return f"{field_file.name} ({filesizeformat(size_bytes)})" if size_bytes is not None else str(field_file.name)


class _NoAddMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _ServicesOnlyMixin(_NoAddMixin):
    """No add, no delete (the services do both); edits are audited."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changed = {
            name: {"from": _plain(form.initial.get(name)), "to": _plain(form.cleaned_data.get(name))}
            for name in form.changed_data
        }
        with transaction.atomic():
            super().save_model(request, obj, form, change)  # type: ignore[misc]
            if changed:
                audit_log(
                    actor=request.user,
                    action=f"{obj._meta.model_name}.updated",
                    target=obj,
                    data={**changed, "via": "admin"},
                )


@admin.register(Classifier)
class ClassifierAdmin(_ServicesOnlyMixin, admin.ModelAdmin):
    list_display = (
        "name", "owner", "team", "status", "file_format", "shape", "num_classes", "conv3d_count",
        "size", "archived", "created_at",
    )
    list_filter = ("status", "file_format", "team", "archived_at", "created_at")
    search_fields = ("name", "description", "original_filename", "sha256", "owner__username", "code")
    list_select_related = ("owner", "team")
    date_hierarchy = "created_at"
    # Class labels are validated against the model by the service (edit them on the page).
    readonly_fields = (
        "code", "owner", "status", "status_message", "stored_file", "original_filename", "file_format", "sha256", "size_bytes",
        "input_shape", "num_classes", "conv3d_layers", "class_labels", "inspection", "created_at",
    )
    fields = ("name", "description", "team", "archived_at", *readonly_fields)

    @admin.display(description="File")
    def stored_file(self, obj: Classifier) -> str:
        return _stored_file(obj.file, size_bytes=obj.size_bytes)

    @admin.display(description="Input (T×H×W×C)")
    def shape(self, obj: Classifier) -> str:
        return "×".join(str(size) for size in obj.input_shape or [])

    @admin.display(description="Conv3D")
    def conv3d_count(self, obj: Classifier) -> int:
        return len(obj.conv3d_layers or [])

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: Classifier) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="Archived", boolean=True, ordering="archived_at")
    def archived(self, obj: Classifier) -> bool:
        return obj.archived_at is not None


@admin.register(Video)
class VideoAdmin(_ServicesOnlyMixin, admin.ModelAdmin):
    list_display = (
        "name", "owner", "team", "status", "resolution", "fps", "duration_seconds", "frame_count", "codec",
        "size", "expected_class", "archived", "created_at",
    )
    list_filter = ("status", "codec", "container", "team", "archived_at", "created_at")
    search_fields = ("name", "description", "original_filename", "sha256", "owner__username", "code")
    list_select_related = ("owner", "team")
    date_hierarchy = "created_at"
    readonly_fields = (
        "code", "owner", "status", "status_message", "stored_file", "stored_rendition", "stored_poster", "original_filename", "sha256",
        "size_bytes", "container", "codec", "width", "height", "fps", "duration_seconds",
        "frame_count", "probe", "created_at",
    )
    fields = ("name", "description", "team", "expected_class", "archived_at", *readonly_fields)

    @admin.display(description="File")
    def stored_file(self, obj: Video) -> str:
        return _stored_file(obj.file, size_bytes=obj.size_bytes)

    @admin.display(description="Browser rendition")
    def stored_rendition(self, obj: Video) -> str:
        return _stored_file(obj.rendition)

    @admin.display(description="Poster")
    def stored_poster(self, obj: Video) -> str:
        return _stored_file(obj.poster)

    @admin.display(description="Resolution")
    def resolution(self, obj: Video) -> str:
        return f"{obj.width}×{obj.height}"

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: Video) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="Archived", boolean=True, ordering="archived_at")
    def archived(self, obj: Video) -> bool:
        return obj.archived_at is not None


class AnalysisAdminForm(forms.ModelForm):
    """The admin may share an analysis only as the pages may: with a team that sees both inputs."""

    class Meta:
        model = Analysis
        fields = ("title", "team")

    def clean_team(self) -> Any:
        team = self.cleaned_data.get("team")
        if team is not None and self.instance.pk is not None:
            problem = analysis_share_problem(classifier=self.instance.classifier, video=self.instance.video, team=team)
            if problem:
                raise forms.ValidationError(problem)
        return team


@admin.register(Analysis)
class AnalysisAdmin(_ServicesOnlyMixin, admin.ModelAdmin):
    form = AnalysisAdminForm
    list_display = (
        "__str__", "status", "progress_percent", "owner", "team", "classifier", "video",
        "predicted_class", "expected_class", "attempts", "created_at", "finished_at",
    )
    list_filter = ("status", "team", "created_at", "cancel_requested")
    search_fields = (
        "title", "code", "owner__username", "classifier__name", "video__name", "error_message",
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


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    # The username recorded with the event, not the account's current one.
    list_display = ("created_at", "action", "actor_username", "team", "target_type", "target_code")
    list_filter = ("action", "target_type", "team", "created_at")
    search_fields = ("action", "actor_username", "target_code", "code")
    list_select_related = ("actor", "team")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing stays possible through has_view_permission; nothing can be saved.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
