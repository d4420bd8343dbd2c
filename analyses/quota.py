"""Per-user quotas: storage for uploads and results, and analyses queued or running at once.

Limits come from the user's `accounts.UserQuota` row (editable in the admin) and fall back to
the site defaults GRADCAM_QUOTA_STORAGE_MB and GRADCAM_QUOTA_ACTIVE_ANALYSES. Storage counts
what a user's objects keep on disk: uploaded models and videos (refused uploads keep nothing),
each video's browser copy and poster, and every analysis's result files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat

from accounts.models import UserQuota
from analyses.library.models import Classifier, ProcessingStatus, Video
from analyses.runs.models import ACTIVE_STATUSES, Analysis

_MB = 1024 * 1024


@dataclass(frozen=True)
class StorageUse:
    used_bytes: int
    limit_bytes: int

    @property
    def left_bytes(self) -> int:
        return max(0, self.limit_bytes - self.used_bytes)

    @property
    def percent(self) -> int:
        return min(100, int(round(100 * self.used_bytes / self.limit_bytes))) if self.limit_bytes else 100

    def describe(self) -> str:
        return f"{filesizeformat(self.used_bytes)} of {filesizeformat(self.limit_bytes)}"


def _quota_row(user: Any) -> UserQuota | None:
    return UserQuota.objects.filter(user=user).first()


def storage_limit_bytes(*, user: Any) -> int:
    row = _quota_row(user)
    megabytes = (
        row.storage_mb
        if row is not None and row.storage_mb is not None
        else settings.GRADCAM_QUOTA_STORAGE_MB
    )
    return int(megabytes) * _MB


def active_analyses_limit(*, user: Any) -> int:
    row = _quota_row(user)
    if row is not None and row.active_analyses is not None:
        return int(row.active_analyses)
    return int(settings.GRADCAM_QUOTA_ACTIVE_ANALYSES)


def _sum(queryset: Any, *fields: str) -> int:
    totals = queryset.aggregate(**{field: Sum(field) for field in fields})
    return sum(int(value or 0) for value in totals.values())


def storage_used_bytes(*, user: Any) -> int:
    kept = {"owner": user}
    return (
        _sum(Classifier.objects.filter(**kept).exclude(status=ProcessingStatus.FAILED), "size_bytes")
        + _sum(
            Video.objects.filter(**kept).exclude(status=ProcessingStatus.FAILED),
            "size_bytes",
            "derived_bytes",
        )
        + _sum(Analysis.objects.filter(**kept), "results_bytes")
    )


def storage_use(*, user: Any) -> StorageUse:
    return StorageUse(used_bytes=storage_used_bytes(user=user), limit_bytes=storage_limit_bytes(user=user))


def active_analyses_count(*, user: Any) -> int:
    return Analysis.objects.filter(owner=user, status__in=ACTIVE_STATUSES).count()
