"""The access rules every context shares: what a user may see, and what they may change.

Visible: the user owns the object, the object belongs to one of the user's teams, or a share row
gives it to the user or to one of the user's teams (read-only: a share never makes an object
writable, see analyses.sharing). An upload still being processed, or refused, is visible to its owner only. An analysis is visible only
to someone who can also see both its inputs (its results show the video's frames): when a
video or model stops being shared with a team, its analyses stop being visible there too.
Writable: the user owns it, or holds the owner role in the object's team.
An object the user may not see does not exist for them (404); one they may see but not change
answers 403 to a write.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from accounts.models import TeamMembership, TeamRole
from analyses.sharing.models import SHARE_TARGET_FIELDS, Share

ModelT = TypeVar("ModelT", bound=Model)


def is_anonymous(user: Any) -> bool:
    return user is None or not getattr(user, "is_authenticated", False)


def _team_ids(user: Any) -> QuerySet:
    return TeamMembership.objects.filter(user=user).values("team_id")


def _share_field(queryset: QuerySet) -> str | None:
    """The Share foreign key naming rows of this model, if the model can be shared."""
    name = queryset.model._meta.model_name
    return name if name in SHARE_TARGET_FIELDS else None


def _shared_rows(queryset: QuerySet[ModelT], *, user: Any) -> Q:
    """Rows a share gives to the user or to one of the user's teams (a subquery, no join, so
    no duplicate rows)."""
    field = _share_field(queryset)
    if field is None:
        return Q(pk__in=[])
    shares = Share.objects.filter(Q(user=user) | Q(team_id__in=_team_ids(user)))
    return Q(pk__in=shares.filter(**{f"{field}__isnull": False}).values(f"{field}_id"))


def visible(queryset: QuerySet[ModelT], *, user: Any) -> QuerySet[ModelT]:
    """The rows the user owns, that belong to one of the user's teams, or that are shared with
    the user or one of the user's teams."""
    if is_anonymous(user):
        return queryset.none()
    return queryset.filter(owned_or_team(queryset, user=user) | _shared_rows(queryset, user=user))


def owned_or_team(queryset: QuerySet, *, user: Any) -> Q:
    """The condition "the user owns it or it belongs to one of the user's teams": what gives
    the files themselves (a model file, an original video), which a share never does."""
    return Q(owner=user) | Q(team_id__in=_team_ids(user))


def shared_with(queryset: QuerySet[ModelT], *, user: Any) -> QuerySet[ModelT]:
    """Of `queryset` (already scoped to the user), the rows others share with the user: those
    of one of the user's teams and those a share row gives the user or a team of theirs, that
    the user does not own."""
    if is_anonymous(user):
        return queryset.none()
    return queryset.filter(Q(team_id__in=_team_ids(user)) | _shared_rows(queryset, user=user)).exclude(
        owner=user
    )


def holds_files(*, user: Any, obj: Any) -> bool:
    """Whether the user may take the object's own file (a model file, an original video): its
    owner and its team's members may; a share (read-only) never gives the file."""
    if is_anonymous(user):
        return False
    if obj.owner_id == user.pk:
        return True
    return obj.team_id is not None and TeamMembership.objects.filter(team_id=obj.team_id, user=user).exists()


def can_write(*, user: Any, obj: Any) -> bool:
    if is_anonymous(user):
        return False
    if obj.owner_id == user.pk:
        return True
    if obj.team_id is None:
        return False
    return TeamMembership.objects.filter(team_id=obj.team_id, user=user, role=TeamRole.OWNER).exists()


def writable(queryset: QuerySet[ModelT], *, user: Any) -> QuerySet[ModelT]:
    """The rows `can_write` allows, as a filter: the user owns them, or holds the owner role in
    their team (for lists such as "shares on objects you may manage")."""
    if is_anonymous(user):
        return queryset.none()
    owned_teams = TeamMembership.objects.filter(user=user, role=TeamRole.OWNER).values("team_id")
    return queryset.filter(Q(owner=user) | Q(team_id__in=owned_teams))


def get_for_user(queryset: QuerySet[ModelT], *, code: Any, user: Any, for_write: bool) -> ModelT:
    """The row with this UUID code among `queryset` (already scoped to the user): 404 when it
    is not there, 403 when `for_write` and the user may see but not change it."""
    try:
        parsed_code = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except (ValueError, TypeError, AttributeError):
        raise Http404("No such object") from None
    try:
        obj = queryset.get(code=parsed_code)
    except ObjectDoesNotExist:  # what queryset.get raises: its model's DoesNotExist
        raise Http404("No such object") from None
    if for_write and not can_write(user=user, obj=obj):
        raise PermissionDenied("You can view this but not change it.")
    return obj
