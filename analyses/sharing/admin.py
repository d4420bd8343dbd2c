"""Admin for shares and share links: read-only lists (never a link's token, which is not stored),
with revoking through the services so it is audited like on the pages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from analyses.sharing.models import Share, ShareLink
from analyses.sharing.services import share_link_revoke, share_revoke


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Share)
class ShareAdmin(_ReadOnlyAdmin):
    list_display = ("__str__", "role", "created_by", "created_at")
    list_select_related = ("analysis", "classifier", "video", "user", "team", "created_by")
    search_fields = ("user__username", "team__name", "analysis__title", "classifier__name", "video__name")
    actions = ["revoke"]

    @admin.action(description="Revoke the selected shares")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Share]) -> None:
        for share in queryset:
            share_revoke(actor=request.user, share=share, as_admin=True)
        messages.success(request, "Revoked.")


@admin.register(ShareLink)
class ShareLinkAdmin(_ReadOnlyAdmin):
    list_display = (
        "__str__",
        "analysis",
        "created_by",
        "expires_at",
        "revoked_at",
        "use_count",
        "last_used_at",
    )
    list_select_related = ("analysis", "created_by")
    exclude = ("token_sha256",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected share links")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ShareLink]) -> None:
        for link in queryset.select_related("analysis"):
            share_link_revoke(actor=request.user, link=link, as_admin=True)
        messages.success(request, "Revoked.")
