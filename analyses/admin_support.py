"""What the admin pages of the analyses contexts share: no add, no delete, audited edits.

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

from django.db import models, transaction
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from audit.log import audit_log


def plain_value(value: Any) -> Any:
    """A JSON-able form of a form value, for the audit trail."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)


def stored_file_text(field_file: Any, *, size_bytes: int | None = None) -> str:
    """A stored file as its name (and size). Never its `.url`: media has no URL (MEDIA_URL is
    None); files are served only by the library views, which check the same permission as
    their page and which the admin does not bypass."""
    if not field_file:
        return "—"
    return (
        f"{field_file.name} ({filesizeformat(size_bytes)})"
        if size_bytes is not None
        else str(field_file.name)
    )


class _NoAddMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServicesOnlyMixin(_NoAddMixin):
    """No add, no delete (the services do both); edits are audited."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changed = {
            name: {
                "from": plain_value(form.initial.get(name)),
                "to": plain_value(form.cleaned_data.get(name)),
            }
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
