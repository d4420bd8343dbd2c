"""Reads of the audit trail: which events a user may see, and what the page needs about them.

A user sees the events they performed, the events on objects they own (`subject_owner`, set by
`audit_log` from the target's owner, so it holds after the object is deleted), and the events on
the teams they own; staff see every event. The audit app imports no project app: teams are
reached through the event's `team` foreign key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import Q, QuerySet

from audit.models import AuditEvent

# accounts.models.TeamRole.OWNER (the audit app imports no project app; a test pins the two equal).
TEAM_OWNER_ROLE = "owner"
# The action suffix of the event that records an object's deletion (its tombstone).
DELETED_SUFFIX = ".deleted"


def team_model() -> Any:
    """accounts.Team, reached through AuditEvent.team rather than imported."""
    return AuditEvent._meta.get_field("team").related_model


def audit_events_visible_to(*, user: Any) -> QuerySet[AuditEvent]:
    """The events `user` may read, newest first (none for anonymous users)."""
    events = AuditEvent.objects.select_related("actor", "team").order_by("-created_at", "-id")
    if not getattr(user, "is_authenticated", False):
        return events.none()
    if user.is_staff:
        return events
    owned_teams = (
        team_model().objects.filter(memberships__user=user, memberships__role=TEAM_OWNER_ROLE).values("pk")
    )
    return events.filter(Q(actor=user) | Q(subject_owner=user) | Q(target_type="team", team__in=owned_teams))


def audit_teams_for(*, user: Any) -> QuerySet[Any]:
    """The teams the audit page offers as a filter: the user's teams (every team for staff)."""
    teams = team_model().objects.order_by("name", "pk")
    if not getattr(user, "is_authenticated", False):
        return teams.none()
    return teams if user.is_staff else teams.filter(memberships__user=user)


def tombstones_for(*, target_codes: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, AuditEvent]:
    """target code -> the event that recorded its deletion, for the codes that were deleted
    (one query, whatever the number of codes)."""
    codes = {code for code in target_codes if code is not None}
    if not codes:
        return {}
    deletions = AuditEvent.objects.filter(target_code__in=codes, action__endswith=DELETED_SUFFIX).order_by(
        "created_at", "id"
    )
    # The latest deletion wins (there is only one per object: codes are never reused).
    return {event.target_code: event for event in deletions if event.target_code is not None}
