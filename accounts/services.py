"""Writes about teams. Every write checks permission, keeps at least one owner per team, and
is audited through `analyses.audit.audit_log`.

Errors: `PermissionDenied` when the actor may not do this (views turn it into 403; callers
have already checked the actor can see the team, so outsiders got 404 before), and
`ValidationError` (with a field name where one applies) for a request that cannot be
honoured, e.g. an unknown username or removing the last owner.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Team, TeamMembership, TeamRole
from analyses.audit import audit_log

LAST_OWNER_MESSAGE = "A team needs at least one owner: make someone else an owner first."


_NOT_OWNER_MESSAGE = "Only team owners can manage members."


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
def team_member_add(
    *, actor: Any, team: Team, username: str, role: str = TeamRole.MEMBER
) -> TeamMembership:
    _require_owner(actor=actor, team=team)
    _validate_role(role)
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
            membership = TeamMembership.objects.create(
                team=team, user=new_member, role=role, added_by=actor
            )
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
