"""Reads of analyses, scoped to the user asking.

An analysis is visible only to someone who can also see both its inputs (its results show the
video's frames): when a video or model stops being shared with a team, its analyses stop being
visible there too.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from analyses.access import get_for_user, visible
from analyses.library.selectors import classifiers_visible_to, videos_visible_to
from analyses.runs.models import Analysis


def analyses_visible_to(*, user: Any) -> QuerySet[Analysis]:
    return visible(Analysis.objects.select_related("owner", "team", "classifier", "video"), user=user).filter(
        classifier__in=classifiers_visible_to(user=user, include_archived=True).values("pk"),
        video__in=videos_visible_to(user=user, include_archived=True).values("pk"),
    )


def analysis_get_for_user(*, code: Any, user: Any, for_write: bool = False) -> Analysis:
    return get_for_user(analyses_visible_to(user=user), code=code, user=user, for_write=for_write)
