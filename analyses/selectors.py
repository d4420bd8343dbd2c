"""Reads scoped to a user: what they may see, and what they may change.

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

from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from accounts.models import Team, TeamMembership, TeamRole
from analyses.models import Analysis, Classifier, Preview, ProcessingStatus, Video

ModelT = TypeVar("ModelT", bound=Model)


def _anonymous(user: Any) -> bool:
    return user is None or not getattr(user, "is_authenticated", False)


def teams_of(*, user: Any) -> QuerySet[Team]:
    if _anonymous(user):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).distinct()


def _visible(queryset: QuerySet[ModelT], *, user: Any) -> QuerySet[ModelT]:
    if _anonymous(user):
        return queryset.none()
    team_ids = TeamMembership.objects.filter(user=user).values("team_id")
    return queryset.filter(Q(owner=user) | Q(team_id__in=team_ids))


def _uploads_visible(queryset: QuerySet[ModelT], *, user: Any, include_archived: bool) -> QuerySet[ModelT]:
    queryset = _visible(queryset, user=user)
    if not _anonymous(user):
        # Others see an upload once a worker has accepted it (not while processing, not refused).
        queryset = queryset.filter(Q(owner=user) | Q(status=ProcessingStatus.READY))
    return queryset if include_archived else queryset.filter(archived_at__isnull=True)


def classifiers_visible_to(*, user: Any, include_archived: bool = False) -> QuerySet[Classifier]:
    return _uploads_visible(Classifier.objects.select_related("owner", "team"), user=user, include_archived=include_archived)


def videos_visible_to(*, user: Any, include_archived: bool = False) -> QuerySet[Video]:
    return _uploads_visible(Video.objects.select_related("owner", "team"), user=user, include_archived=include_archived)


def classifiers_usable_by(*, user: Any) -> QuerySet[Classifier]:
    """Models the user may start an analysis with: visible, inspected, not archived."""
    return classifiers_visible_to(user=user).filter(status=ProcessingStatus.READY)


def videos_usable_by(*, user: Any) -> QuerySet[Video]:
    """Videos the user may analyse: visible, probed and transcoded, not archived."""
    return videos_visible_to(user=user).filter(status=ProcessingStatus.READY)


def analyses_visible_to(*, user: Any) -> QuerySet[Analysis]:
    return _visible(
        Analysis.objects.select_related("owner", "team", "classifier", "video"), user=user
    ).filter(
        classifier__in=classifiers_visible_to(user=user, include_archived=True).values("pk"),
        video__in=videos_visible_to(user=user, include_archived=True).values("pk"),
    )


def can_write(*, user: Any, obj: Any) -> bool:
    if _anonymous(user):
        return False
    if obj.owner_id == user.pk:
        return True
    if obj.team_id is None:
        return False
    return TeamMembership.objects.filter(
        team_id=obj.team_id, user=user, role=TeamRole.OWNER
    ).exists()


def _get_for_user(
    queryset: QuerySet[ModelT], *, code: Any, user: Any, for_write: bool
) -> ModelT:
    try:
        parsed_code = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except (ValueError, TypeError, AttributeError):
        raise Http404("No such object") from None
    try:
        obj = queryset.get(code=parsed_code)
    except queryset.model.DoesNotExist:
        raise Http404("No such object") from None
    if for_write and not can_write(user=user, obj=obj):
        raise PermissionDenied("You can view this but not change it.")
    return obj


def classifier_get_for_user(
    *, code: Any, user: Any, for_write: bool = False, include_archived: bool = True
) -> Classifier:
    # Archived classifiers stay reachable by code: past analyses link to them.
    return _get_for_user(
        classifiers_visible_to(user=user, include_archived=include_archived),
        code=code, user=user, for_write=for_write,
    )


def video_get_for_user(
    *, code: Any, user: Any, for_write: bool = False, include_archived: bool = True
) -> Video:
    return _get_for_user(
        videos_visible_to(user=user, include_archived=include_archived),
        code=code, user=user, for_write=for_write,
    )


def analysis_get_for_user(*, code: Any, user: Any, for_write: bool = False) -> Analysis:
    return _get_for_user(analyses_visible_to(user=user), code=code, user=user, for_write=for_write)


def preview_get_for_user(*, code: Any, user: Any) -> Preview:
    """A preview is its maker's alone, and only while they can still see its video."""
    queryset = Preview.objects.select_related("classifier", "video").filter(
        owner=user if not _anonymous(user) else None,
        video__in=videos_visible_to(user=user, include_archived=True).values("pk"),
    )
    return _get_for_user(queryset, code=code, user=user, for_write=False)
