"""The audit trail in the admin: readable, never added to, changed or deleted."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    # The username recorded with the event, not the account's current one.
    list_display = (
        "created_at",
        "action",
        "actor_username",
        "subject_owner_username",
        "team",
        "target_type",
        "target_code",
    )
    list_filter = ("action", "target_type", "team", "created_at")
    search_fields = ("action", "actor_username", "subject_owner_username", "target_code", "code")
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
