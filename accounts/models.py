"""Users and teams.

A team groups users who share libraries and analyses. Membership is a row with a role and a
unique (team, user) constraint; team owners manage members.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)


class Team(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    members: models.ManyToManyField[User, TeamMembership] = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="TeamMembership",
        # TeamMembership has two user keys (user, added_by): the membership is `user`.
        through_fields=("team", "user"),
        related_name="teams",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamRole(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    role = models.CharField(max_length=16, choices=TeamRole.choices, default=TeamRole.MEMBER)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="unique_team_membership"),
        ]
        ordering = ["team", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class UserQuota(models.Model):
    """Per-user limits that staff may set in the admin; an empty value means the site default
    (settings GRADCAM_QUOTA_STORAGE_MB / GRADCAM_QUOTA_ACTIVE_ANALYSES)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    storage_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="Storage for uploads and results, in MB (empty: the site default)"
    )
    active_analyses = models.PositiveIntegerField(
        null=True, blank=True, help_text="Analyses queued or running at once (empty: the site default)"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Quota of {self.user}"
