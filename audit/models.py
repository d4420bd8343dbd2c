"""The audit trail: one append-only row per write.

The table keeps its original name (`analyses_auditevent`, from when the model lived in the
analyses app): the database triggers that make it append-only are created on that table.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

AUDIT_APPEND_ONLY = "Audit events are append-only: they are never changed or deleted"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Bulk writes are refused like single ones; the database refuses them too (triggers
    created by analyses migration 0002, see audit.triggers)."""

    def update(self, **kwargs: object) -> int:
        raise ValidationError(AUDIT_APPEND_ONLY)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValidationError(AUDIT_APPEND_ONLY)


class AuditEvent(models.Model):
    """Append-only record of every write. Rows are never updated or deleted, by the app or
    by anyone with database access short of dropping the triggers.

    Users and teams with events cannot be deleted (PROTECT: a deleted key would have to
    rewrite the event); users are deactivated instead. `actor_username` keeps who acted
    readable whatever happens to the account later.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_username = models.CharField(
        max_length=150,
        blank=True,
        editable=False,
        help_text="The actor's username when the event was recorded",
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Whose object the event is about (the target's owner when it has one), kept on the row so
    # "events on my objects" is one indexed filter, and still answers after the object is deleted.
    subject_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    subject_owner_username = models.CharField(
        max_length=150,
        blank=True,
        editable=False,
        help_text="The username of the target's owner when the event was recorded",
    )
    action = models.CharField(max_length=100, db_index=True, help_text="Dotted code, e.g. classifier.created")
    target_type = models.CharField(max_length=50, blank=True)
    target_code = models.UUIDField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        db_table = "analyses_auditevent"
        # The audit page's scopes, each in its newest-first order.
        indexes = [
            models.Index(fields=["actor", "-created_at"], name="audit_actor_created"),
            models.Index(fields=["subject_owner", "-created_at"], name="audit_subject_owner_created"),
            models.Index(fields=["team", "-created_at"], name="audit_team_created"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError(AUDIT_APPEND_ONLY)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ValidationError(AUDIT_APPEND_ONLY)
