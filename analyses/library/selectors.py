"""Reads of the library (classifiers, videos, previews), scoped to the user asking.

An upload still being processed, or refused, is visible to its owner only (see analyses.access
for the rules every context shares).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from analyses.access import get_for_user, is_anonymous, visible
from analyses.library.models import Classifier, Preview, ProcessingStatus, Video

# Pixel scalings the engine knows ("auto" resolves to one of them, see suggested_scaling).
SCALINGS = ("unit", "symmetric", "raw", "mean_std")


def _uploads_visible(queryset: QuerySet, *, user: Any, include_archived: bool) -> QuerySet:
    queryset = visible(queryset, user=user)
    if not is_anonymous(user):
        # Others see an upload once a worker has accepted it (not while processing, not refused).
        queryset = queryset.filter(Q(owner=user) | Q(status=ProcessingStatus.READY))
    return queryset if include_archived else queryset.filter(archived_at__isnull=True)


def classifiers_visible_to(*, user: Any, include_archived: bool = False) -> QuerySet[Classifier]:
    return _uploads_visible(
        Classifier.objects.select_related("owner", "team"), user=user, include_archived=include_archived
    )


def videos_visible_to(*, user: Any, include_archived: bool = False) -> QuerySet[Video]:
    return _uploads_visible(
        Video.objects.select_related("owner", "team"), user=user, include_archived=include_archived
    )


def classifiers_usable_by(*, user: Any) -> QuerySet[Classifier]:
    """Models the user may start an analysis with: visible, inspected, not archived."""
    return classifiers_visible_to(user=user).filter(status=ProcessingStatus.READY)


def videos_usable_by(*, user: Any) -> QuerySet[Video]:
    """Videos the user may analyse: visible, probed and transcoded, not archived."""
    return videos_visible_to(user=user).filter(status=ProcessingStatus.READY)


def classifier_get_for_user(
    *, code: Any, user: Any, for_write: bool = False, include_archived: bool = True
) -> Classifier:
    # Archived classifiers stay reachable by code: past analyses link to them.
    return get_for_user(
        classifiers_visible_to(user=user, include_archived=include_archived),
        code=code,
        user=user,
        for_write=for_write,
    )


def video_get_for_user(
    *, code: Any, user: Any, for_write: bool = False, include_archived: bool = True
) -> Video:
    return get_for_user(
        videos_visible_to(user=user, include_archived=include_archived),
        code=code,
        user=user,
        for_write=for_write,
    )


def preview_get_for_user(*, code: Any, user: Any) -> Preview:
    """A preview is its maker's alone, and only while they can still see its video."""
    queryset = Preview.objects.select_related("classifier", "video").filter(
        owner=user if not is_anonymous(user) else None,
        video__in=videos_visible_to(user=user, include_archived=True).values("pk"),
    )
    return get_for_user(queryset, code=code, user=user, for_write=False)


def suggested_scaling(*, classifier: Classifier) -> tuple[str, str]:
    """(scaling, reason) the model's own input layers ask for, from its inspection; the original
    tool's [0, 1] when it says nothing."""
    inspection = classifier.inspection or {}
    name = str(inspection.get("suggested_scaling") or "unit")
    return (name if name in SCALINGS else "unit"), str(inspection.get("scaling_reason") or "")
