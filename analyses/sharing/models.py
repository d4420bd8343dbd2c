"""Share rows and share links.

A `Share` names one object (an analysis, a classifier or a video) and one recipient (a user or
a team) with a role; today the only role is read-only ("viewer"): a share never gives the right
to change, delete or re-share. Unique constraints keep one row per object and recipient.

A `ShareLink` is an unguessable token for one analysis's result, or for one saved comparison,
shown once to its maker and stored only as its SHA-256, with an expiry; revoking it or its
expiry ends it at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from analyses.library.models import Classifier, Video
from analyses.runs.models import Analysis


class ShareRole(models.TextChoices):
    VIEWER = "viewer", "Can view"


SHARE_TARGET_FIELDS = ("analysis", "classifier", "video")


def _exactly_one(*fields: str) -> Q:
    """A check that exactly one of the nullable foreign keys `fields` is set."""
    options = Q()
    for chosen in fields:
        clause = Q(**{f"{chosen}__isnull": False})
        for other in fields:
            if other != chosen:
                clause &= Q(**{f"{other}__isnull": True})
        options |= clause
    return options


class Share(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    analysis = models.ForeignKey(
        Analysis, on_delete=models.CASCADE, null=True, blank=True, related_name="shares"
    )
    classifier = models.ForeignKey(
        Classifier, on_delete=models.CASCADE, null=True, blank=True, related_name="shares"
    )
    video = models.ForeignKey(Video, on_delete=models.CASCADE, null=True, blank=True, related_name="shares")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    role = models.CharField(max_length=16, choices=ShareRole.choices, default=ShareRole.VIEWER)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=_exactly_one(*SHARE_TARGET_FIELDS), name="share_one_target"),
            models.CheckConstraint(condition=_exactly_one("user", "team"), name="share_one_recipient"),
            *[
                models.UniqueConstraint(
                    fields=[target, recipient],
                    condition=Q(**{f"{target}__isnull": False, f"{recipient}__isnull": False}),
                    name=f"share_unique_{target}_{recipient}",
                )
                for target in SHARE_TARGET_FIELDS
                for recipient in ("user", "team")
            ],
        ]

    def __str__(self) -> str:
        return f"{self.target} shared with {self.recipient_name}"

    @property
    def target(self) -> Analysis | Classifier | Video:
        target = self.analysis or self.classifier or self.video
        assert target is not None  # the check constraint share_one_target
        return target

    @property
    def recipient_name(self) -> str:
        if self.user_id is not None and self.user is not None:
            return self.user.get_username()
        return f"team {self.team.name}" if self.team is not None else ""


class ShareLink(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    token_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    analysis = models.ForeignKey(
        Analysis, on_delete=models.CASCADE, null=True, blank=True, related_name="share_links"
    )
    comparison = models.ForeignKey(
        "analyses.Comparison", on_delete=models.CASCADE, null=True, blank=True, related_name="share_links"
    )
    label = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=_exactly_one("analysis", "comparison"), name="share_link_one_target"
            )
        ]

    def __str__(self) -> str:
        return self.label or f"Link {str(self.code)[:8]}"

    @property
    def target(self) -> Any:
        """The analysis or the comparison the link shows."""
        return self.analysis if self.analysis_id is not None else self.comparison


class SharedInboxVisit(models.Model):
    """When the user last opened "Shared with me": what was shared after it counts as new."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.user} looked at what is shared with them at {self.seen_at:%Y-%m-%d %H:%M}"
