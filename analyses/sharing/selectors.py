"""Reads of shares and share links, scoped to the user asking."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from accounts.models import TeamMembership
from analyses.access import get_for_user, is_anonymous, writable
from analyses.library.selectors import classifiers_visible_to, videos_visible_to
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.runs.selectors import analyses_visible_to
from analyses.sharing.models import Share, SharedInboxVisit, ShareLink
from analyses.sharing.services import Shareable, comparison_link_problem, link_problem, token_digest

# A token is 43 URL-safe characters; anything much longer is not one of ours.
TOKEN_MAX_LENGTH = 64


def shares_of(*, target: Shareable) -> QuerySet[Share]:
    field = target._meta.model_name or ""
    return Share.objects.filter(**{field: target}).select_related("user", "team", "created_by")


def share_links_of(*, analysis: Analysis) -> QuerySet[ShareLink]:
    return ShareLink.objects.filter(analysis=analysis).select_related("created_by", "revoked_by")


def _shares_visible_to(*, user: Any) -> QuerySet[Share]:
    """The shares on objects the user can see."""
    return Share.objects.filter(
        Q(analysis__in=analyses_visible_to(user=user).values("pk"))
        | Q(classifier__in=classifiers_visible_to(user=user, include_archived=True).values("pk"))
        | Q(video__in=videos_visible_to(user=user, include_archived=True).values("pk"))
    ).select_related("analysis", "classifier", "video", "user", "team", "created_by")


def share_get_for_user(*, code: Any, user: Any) -> Share:
    """A share the user can see: one on an object they can see (404 otherwise)."""
    return get_for_user(_shares_visible_to(user=user), code=code, user=user, for_write=False)


def shares_listed_for(*, user: Any) -> QuerySet[Share]:
    """The shares the API lists for the user, among those on objects they can see: the ones on
    objects they may manage (share and revoke), the ones they made, and the ones made for them
    or for a team of theirs."""
    if is_anonymous(user):
        return Share.objects.none()
    team_ids = TeamMembership.objects.filter(user=user).values("team_id")
    managed = (
        Q(analysis__in=writable(analyses_visible_to(user=user), user=user).values("pk"))
        | Q(
            classifier__in=writable(
                classifiers_visible_to(user=user, include_archived=True), user=user
            ).values("pk")
        )
        | Q(video__in=writable(videos_visible_to(user=user, include_archived=True), user=user).values("pk"))
    )
    return _shares_visible_to(user=user).filter(
        managed | Q(created_by=user) | Q(user=user) | Q(team_id__in=team_ids)
    )


def _share_links_visible_to(*, user: Any) -> QuerySet[ShareLink]:
    """Links on an analysis the user can see, or on a comparison they own."""
    return ShareLink.objects.filter(
        Q(analysis__in=analyses_visible_to(user=user).values("pk")) | Q(comparison__owner=user)
    ).select_related("analysis", "comparison", "created_by", "revoked_by")


def share_link_get_for_user(*, code: Any, user: Any) -> ShareLink:
    """A link the user may manage: on an analysis they can see, or on a comparison they own."""
    if is_anonymous(user):
        raise Http404("No such link")
    return get_for_user(_share_links_visible_to(user=user), code=code, user=user, for_write=False)


def share_links_listed_for(*, user: Any) -> QuerySet[ShareLink]:
    """The links the API lists for the user: the ones they made and the ones on analyses they
    may share, or on comparisons they own (never a token: only its digest is stored)."""
    if is_anonymous(user):
        return ShareLink.objects.none()
    managed = Q(analysis__in=writable(analyses_visible_to(user=user), user=user).values("pk"))
    return _share_links_visible_to(user=user).filter(managed | Q(created_by=user) | Q(comparison__owner=user))


def share_link_live(*, token: str) -> ShareLink | None:
    """The link this token opens, if it still works: not revoked, not expired, and its maker
    still allowed to make it (the analysis, or every analysis of the comparison, finished and
    shareable with both inputs by them)."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    link = (
        ShareLink.objects.select_related(
            "analysis",
            "analysis__classifier",
            "analysis__video",
            "analysis__owner",
            "comparison",
            "created_by",
        )
        .filter(token_sha256=token_digest(token), revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if link is None:
        return None
    if link.comparison is not None:
        return None if comparison_link_problem(user=link.created_by, comparison=link.comparison) else link
    if link.analysis is None or link.analysis.status != AnalysisStatus.SUCCEEDED:
        return None
    return None if link_problem(user=link.created_by, analysis=link.analysis) else link


def share_links_of_comparison(*, comparison: Any) -> QuerySet[ShareLink]:
    return ShareLink.objects.filter(comparison=comparison).select_related("created_by", "revoked_by")


def _shared_with_user(*, user: Any) -> QuerySet[Share]:
    team_ids = TeamMembership.objects.filter(user=user).values("team_id")
    return Share.objects.filter(Q(user=user) | Q(team_id__in=team_ids)).exclude(created_by=user)


def shared_items_for(*, user: Any) -> dict[str, list[Any]]:
    """What others shared with the user (or a team of theirs) that the user can open, newest
    share first: {"analysis": [...], "classifier": [...], "video": [...]}, each item once."""
    shares = _shared_with_user(user=user).order_by("-created_at")
    visible = {
        "analysis": analyses_visible_to(user=user),
        "classifier": classifiers_visible_to(user=user, include_archived=False),
        "video": videos_visible_to(user=user, include_archived=False),
    }
    items: dict[str, list[Any]] = {}
    for kind, queryset in visible.items():
        ids = shares.filter(**{f"{kind}__isnull": False}).values(f"{kind}_id")
        items[kind] = list(queryset.filter(pk__in=ids)[:200])
    return items


def shared_new_count(*, user: Any) -> int:
    """Shares made for the user (or a team of theirs) since they last opened "Shared with me"
    (one query: it runs on every signed-in page)."""
    if is_anonymous(user):
        return 0
    seen = SharedInboxVisit.objects.filter(user=user).values("seen_at")[:1]
    return (
        _shared_with_user(user=user)
        .filter(Q(created_at__gt=Subquery(seen)) | ~Exists(SharedInboxVisit.objects.filter(user=user)))
        .count()
    )
