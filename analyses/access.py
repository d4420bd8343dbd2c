"""The access rules every context shares: what a user may see, and what they may change.

Visible: the user owns the object, or the object belongs to one of the user's teams. An upload
still being processed, or refused, is visible to its owner only. An analysis is visible only
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

ModelT = TypeVar("ModelT", bound=Model)


def is_anonymous(user: Any) -> bool:
    return user is None or not getattr(user, "is_authenticated", False)


def visible(queryset: QuerySet[ModelT], *, user: Any) -> QuerySet[ModelT]:
    """The rows the user owns or that belong to one of the user's teams."""
    if is_anonymous(user):
        return queryset.none()
    team_ids = TeamMembership.objects.filter(user=user).values("team_id")
    return queryset.filter(Q(owner=user) | Q(team_id__in=team_ids))


def shared_with(queryset: QuerySet[ModelT], *, user: Any) -> QuerySet[ModelT]:
    """Of `queryset` (already scoped to the user), the rows others share with the user: today,
    those that belong to one of the user's teams and that the user does not own. A per-user
    share (a row naming the user) is to be OR'ed in here, so every "shared with me" follows."""
    if is_anonymous(user):
        return queryset.none()
    team_ids = TeamMembership.objects.filter(user=user).values("team_id")
    return queryset.filter(team_id__in=team_ids).exclude(owner=user)


def can_write(*, user: Any, obj: Any) -> bool:
    if is_anonymous(user):
        return False
    if obj.owner_id == user.pk:
        return True
    if obj.team_id is None:
        return False
    return TeamMembership.objects.filter(team_id=obj.team_id, user=user, role=TeamRole.OWNER).exists()


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
