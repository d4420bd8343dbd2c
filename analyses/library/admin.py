"""Admin for classifiers and videos (see analyses.admin_support for what it may and may not do)."""

from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from analyses.admin_support import ServicesOnlyMixin, stored_file_text
from analyses.library.models import Classifier, Video


@admin.register(Classifier)
class ClassifierAdmin(ServicesOnlyMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "owner",
        "team",
        "status",
        "file_format",
        "shape",
        "num_classes",
        "conv3d_count",
        "size",
        "archived",
        "created_at",
    )
    list_filter = ("status", "file_format", "team", "archived_at", "created_at")
    search_fields = ("name", "description", "original_filename", "sha256", "owner__username", "code")
    list_select_related = ("owner", "team")
    date_hierarchy = "created_at"
    # Class labels are validated against the model by the service (edit them on the page).
    readonly_fields = (
        "code",
        "owner",
        "status",
        "status_message",
        "stored_file",
        "original_filename",
        "file_format",
        "sha256",
        "size_bytes",
        "input_shape",
        "num_classes",
        "conv3d_layers",
        "class_labels",
        "inspection",
        "created_at",
    )
    fields = ("name", "description", "team", "archived_at", *readonly_fields)

    @admin.display(description="File")
    def stored_file(self, obj: Classifier) -> str:
        return stored_file_text(obj.file, size_bytes=obj.size_bytes)

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
class VideoAdmin(ServicesOnlyMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "owner",
        "team",
        "status",
        "resolution",
        "fps",
        "duration_seconds",
        "frame_count",
        "codec",
        "size",
        "expected_class",
        "archived",
        "created_at",
    )
    list_filter = ("status", "codec", "container", "team", "archived_at", "created_at")
    search_fields = ("name", "description", "original_filename", "sha256", "owner__username", "code")
    list_select_related = ("owner", "team")
    date_hierarchy = "created_at"
    readonly_fields = (
        "code",
        "owner",
        "status",
        "status_message",
        "stored_file",
        "stored_rendition",
        "stored_poster",
        "original_filename",
        "sha256",
        "size_bytes",
        "container",
        "codec",
        "width",
        "height",
        "fps",
        "duration_seconds",
        "frame_count",
        "probe",
        "created_at",
    )
    fields = ("name", "description", "team", "expected_class", "archived_at", *readonly_fields)

    @admin.display(description="File")
    def stored_file(self, obj: Video) -> str:
        return stored_file_text(obj.file, size_bytes=obj.size_bytes)

    @admin.display(description="Browser rendition")
    def stored_rendition(self, obj: Video) -> str:
        return stored_file_text(obj.rendition)

    @admin.display(description="Poster")
    def stored_poster(self, obj: Video) -> str:
        return stored_file_text(obj.poster)

    @admin.display(description="Resolution")
    def resolution(self, obj: Video) -> str:
        return f"{obj.width}×{obj.height}"

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: Video) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="Archived", boolean=True, ordering="archived_at")
    def archived(self, obj: Video) -> bool:
        return obj.archived_at is not None
