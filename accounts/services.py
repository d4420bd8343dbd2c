"""Writes about users and teams. Every write checks permission, keeps at least one owner per
team, and is audited through `audit.log.audit_log`. Users are deactivated, never deleted.

Errors: `PermissionDenied` when the actor may not do this (views turn it into 403; callers
have already checked the actor can see the team, so outsiders got 404 before),
`ValidationError` (with a field name where one applies) for a request that cannot be
honoured, e.g. an unknown username or removing the last owner, and `Throttled` (views answer
429) when a page that tells whether a username exists is used too often.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Team, TeamMembership, TeamRole
from audit.log import audit_log

LAST_OWNER_MESSAGE = "A team needs at least one owner: make someone else an owner first."


_NOT_OWNER_MESSAGE = "Only team owners can manage members."
_THROTTLE_WINDOW_SECONDS = 3600


class Throttled(Exception):
    """Too many attempts of something that is limited per hour; the message says what."""


def throttle_hit(*, scope: str, key: str, limit_per_hour: int, message: str) -> None:
    """Count one attempt of `scope` by `key` (an address, a user id); raise Throttled once
    more than `limit_per_hour` were made in the hour since the first one counted.

    Counted in Django's default cache: per web process with the default in-memory cache.
    """
    digest = hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()
    cache_key = f"throttle:{scope}:{digest}"
    cache.add(cache_key, 0, timeout=_THROTTLE_WINDOW_SECONDS)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add() and incr(): a new window starts
        cache.set(cache_key, 1, timeout=_THROTTLE_WINDOW_SECONDS)
        count = 1
    if count > limit_per_hour:
        raise Throttled(message)


def _require_owner(*, actor: Any, team: Team) -> None:
    """A cheap early refusal; the decision is re-made on the locked rows (_require_owner_in)."""
    if not TeamMembership.objects.filter(team=team, user=actor, role=TeamRole.OWNER).exists():
        raise PermissionDenied(_NOT_OWNER_MESSAGE)


def _require_owner_in(memberships: list[TeamMembership], *, actor: Any) -> None:
    """The actor is an owner according to the LOCKED membership rows: a concurrent request
    that demoted or removed them has either committed (and is seen here) or waits for us."""
    if not any(m.user_id == actor.pk and m.role == TeamRole.OWNER for m in memberships):
        raise PermissionDenied(_NOT_OWNER_MESSAGE)


def _lock_memberships(*, team: Team) -> list[TeamMembership]:
    """Lock the team's membership rows so two concurrent demotions cannot both see "another
    owner exists" and leave the team ownerless (PostgreSQL; SQLite serialises writers)."""
    return list(TeamMembership.objects.select_for_update().filter(team=team).order_by("pk"))


def _validate_role(role: str) -> str:
    if role not in TeamRole.values:
        raise ValidationError({"role": f"Unknown role {role!r}: choose owner or member."})
    return role


@transaction.atomic
def team_create(*, creator: Any, name: str, description: str = "") -> Team:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the team a name."})
    team = Team.objects.create(name=name, description=description.strip(), created_by=creator)
    TeamMembership.objects.create(team=team, user=creator, role=TeamRole.OWNER, added_by=creator)
    audit_log(actor=creator, action="team.created", target=team, team=team, data={"name": team.name})
    return team


@transaction.atomic
def team_member_add(*, actor: Any, team: Team, username: str, role: str = TeamRole.MEMBER) -> TeamMembership:
    _require_owner(actor=actor, team=team)
    _validate_role(role)
    # "There is no user named X" tells whether an account exists: limit how often one may ask.
    throttle_hit(
        scope="team_member_add",
        key=str(actor.pk),
        limit_per_hour=settings.GRADCAM_MEMBER_ADD_LIMIT_PER_HOUR,
        message="You have tried to add members too many times in the last hour: please try again later.",
    )
    _require_owner_in(_lock_memberships(team=team), actor=actor)
    username = username.strip()
    user_model = get_user_model()
    try:
        new_member = user_model.objects.get(username__iexact=username, is_active=True)
    except user_model.DoesNotExist:
        raise ValidationError({"username": f"There is no user named “{username}”."}) from None
    except user_model.MultipleObjectsReturned:
        # Only possible for users created before sign-up refused case-insensitive duplicates.
        try:
            new_member = user_model.objects.get(username=username, is_active=True)
        except user_model.DoesNotExist:
            raise ValidationError(
                {"username": f"Several users match “{username}”: type the exact username."}
            ) from None
    if TeamMembership.objects.filter(team=team, user=new_member).exists():
        raise ValidationError(
            {"username": f"{new_member.get_username()} is already a member of {team.name}."}
        )
    try:
        with transaction.atomic():
            membership = TeamMembership.objects.create(team=team, user=new_member, role=role, added_by=actor)
    except IntegrityError:  # a concurrent add of the same person won the race
        raise ValidationError(
            {"username": f"{new_member.get_username()} is already a member of {team.name}."}
        ) from None
    audit_log(
        actor=actor,
        action="team.member_added",
        target=team,
        team=team,
        data={"username": new_member.get_username(), "user": str(new_member.code), "role": role},
    )
    return membership


@transaction.atomic
def team_member_set_role(*, actor: Any, team: Team, user: Any, role: str) -> TeamMembership:
    _require_owner(actor=actor, team=team)
    _validate_role(role)
    memberships = _lock_memberships(team=team)
    _require_owner_in(memberships, actor=actor)
    membership = next((m for m in memberships if m.user_id == user.pk), None)
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not a member of {team.name}.")
    if membership.role == role:
        return membership
    owners = [m for m in memberships if m.role == TeamRole.OWNER]
    if membership.role == TeamRole.OWNER and len(owners) <= 1:
        raise ValidationError(LAST_OWNER_MESSAGE)
    previous_role = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_log(
        actor=actor,
        action="team.member_role_changed",
        target=team,
        team=team,
        data={
            "username": user.get_username(),
            "user": str(user.code),
            "from": previous_role,
            "to": role,
        },
    )
    return membership


@transaction.atomic
def team_member_remove(*, actor: Any, team: Team, user: Any) -> None:
    """Remove `user` from `team`. Owners may remove anyone; anyone may remove themselves
    (leaving). The last owner can do neither."""
    leaving = actor.pk == user.pk
    if not leaving:
        _require_owner(actor=actor, team=team)
    memberships = _lock_memberships(team=team)
    if not leaving:
        _require_owner_in(memberships, actor=actor)
    membership = next((m for m in memberships if m.user_id == user.pk), None)
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not a member of {team.name}.")
    owners = [m for m in memberships if m.role == TeamRole.OWNER]
    if membership.role == TeamRole.OWNER and len(owners) <= 1:
        raise ValidationError(
            "You are the last owner of this team: make someone else an owner before leaving."
            if leaving
            else LAST_OWNER_MESSAGE
        )
    role = membership.role
    membership.delete()
    audit_log(
        actor=actor,
        action="team.member_left" if leaving else "team.member_removed",
        target=team,
        team=team,
        data={"username": user.get_username(), "user": str(user.code), "role": role},
    )


def team_leave(*, user: Any, team: Team) -> None:
    team_member_remove(actor=user, team=team, user=user)


# --------------------------------------------------------------------------- users
def _teams_left_without_owner(memberships: list[TeamMembership], *, leaving: Any) -> list[str]:
    """Names of the teams (among these memberships) that would keep members but no owner."""
    by_team: dict[int, list[TeamMembership]] = {}
    for membership in memberships:
        by_team.setdefault(membership.team_id, []).append(membership)
    names = []
    for rows in by_team.values():
        others = [m for m in rows if m.user_id != leaving.pk]
        if others and not any(m.role == TeamRole.OWNER for m in others):
            names.append(rows[0].team.name)
    return sorted(names)


@transaction.atomic
def user_deactivate(*, actor: Any, user: Any) -> bool:
    """Stop `user` logging in (their sessions end at their next request); nothing of theirs
    is deleted, so the audit trail and their teams keep them. Refused for oneself and for the
    last owner of a team that has other members. True when the user was active."""
    if actor.pk == user.pk:
        raise ValidationError("You cannot deactivate your own account.")
    if not user.is_active:
        return False
    owned_team_ids = TeamMembership.objects.filter(user=user, role=TeamRole.OWNER).values("team_id")
    memberships = list(
        TeamMembership.objects.select_for_update().filter(team_id__in=owned_team_ids).select_related("team")
    )
    stranded = _teams_left_without_owner(memberships, leaving=user)
    if stranded:
        raise ValidationError(
            f"{user.get_username()} is the last owner of {', '.join(stranded)}, which has other members: "
            "make one of them an owner first."
        )
    user.is_active = False
    user.save(update_fields=["is_active"])
    audit_log(
        actor=actor,
        action="user.deactivated",
        target=user,
        data={"username": user.get_username(), "user": str(user.code)},
    )
    return True


@transaction.atomic
def user_reactivate(*, actor: Any, user: Any) -> bool:
    """Let a deactivated user log in again. True when the user was inactive."""
    if user.is_active:
        return False
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_log(
        actor=actor,
        action="user.reactivated",
        target=user,
        data={"username": user.get_username(), "user": str(user.code)},
    )
    return True
