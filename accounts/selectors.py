"""Reads about teams, always scoped to the user asking.

A team is visible only to its members; to anyone else it does not exist (404), so that team
names and codes cannot be probed.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import Http404

from accounts.models import Team, TeamMembership, TeamRole


def teams_of(*, user: Any) -> QuerySet[Team]:
    """The user's teams, each annotated with `member_count` and `my_role`."""
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    my_role = TeamMembership.objects.filter(team=OuterRef("pk"), user=user).values("role")[:1]
    # Filter by pk__in rather than `memberships__user=user`: that join would restrict the
    # counted memberships to the user's own row, so every team would show 1 member.
    return (
        Team.objects.filter(pk__in=TeamMembership.objects.filter(user=user).values("team_id"))
        .annotate(member_count=Count("memberships", distinct=True), my_role=Subquery(my_role))
        .order_by("name", "pk")
    )


def team_get_for_user(*, code: uuid.UUID | str, user: Any) -> Team:
    """The team with this code if the user is a member; raises Http404 otherwise."""
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such team.")
    try:
        parsed = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
        return Team.objects.get(code=parsed, memberships__user=user)
    except (Team.DoesNotExist, ValueError) as exc:  # ValueError: a malformed code
        raise Http404("No such team.") from exc


def user_is_team_owner(*, user: Any, team: Team) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    return TeamMembership.objects.filter(team=team, user=user, role=TeamRole.OWNER).exists()


def user_is_team_member(*, user: Any, team: Team) -> bool:
    """True for any role (owner or member)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return TeamMembership.objects.filter(team=team, user=user).exists()


def team_memberships(*, team: Team) -> QuerySet[TeamMembership]:
    """Members of a team, owners first, then by username."""
    return (
        TeamMembership.objects.filter(team=team)
        .select_related("user", "added_by")
        .order_by("-role", "user__username")  # "owner" > "member" alphabetically
    )


def team_member_get(*, team: Team, user_code: uuid.UUID | str) -> TeamMembership:
    """A membership of this team by the member's user code; Http404 if they are not in it."""
    try:
        return TeamMembership.objects.select_related("user").get(team=team, user__code=user_code)
    except (TeamMembership.DoesNotExist, ValueError) as exc:
        raise Http404("No such member in this team.") from exc
