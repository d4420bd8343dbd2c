"""The audit page's filters (django-filter, like the analysis history's): actor, action,
object, team and date range, combined in the URL so a filtered view can be bookmarked.

It only narrows a queryset it is given: `audit_filter` feeds it `audit_events_visible_to`, so
the page and its CSV export share one scoping rule. Every value is bounded; a value that does
not parse becomes a form error and its filter is ignored (the others still apply).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from audit.models import AuditEvent
from audit.selectors import audit_events_visible_to, audit_teams_for

MAX_USERNAME_CHARS = 150
MAX_ACTION_CHARS = 100
# What audit events are about (AuditEvent.target_type: the target model's name).
TARGET_TYPE_CHOICES = (
    ("analysis", "Analysis"),
    ("classifier", "Classifier"),
    ("video", "Video"),
    ("comparison", "Comparison"),
    ("team", "Team"),
    ("user", "User"),
)


def _teams(request: Any) -> QuerySet[Any]:
    return audit_teams_for(user=getattr(request, "user", None))


class AuditFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(
        field_name="actor_username",
        lookup_expr="iexact",
        label="Actor",
        max_length=MAX_USERNAME_CHARS,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Username"}),
    )
    action = django_filters.CharFilter(
        method="filter_action",
        label="Action",
        max_length=MAX_ACTION_CHARS,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "analysis. or analysis.deleted"}),
    )
    target_type = django_filters.ChoiceFilter(
        choices=TARGET_TYPE_CHOICES, label="Object type", empty_label="Any object"
    )
    target = django_filters.UUIDFilter(
        field_name="target_code",
        label="Object code",
        widget=forms.TextInput(attrs={"placeholder": "UUID", "maxlength": "36"}),
    )
    team = django_filters.ModelChoiceFilter(
        queryset=_teams, to_field_name="code", empty_label="Any team", label="Team"
    )
    created = django_filters.DateFromToRangeFilter(
        field_name="created_at",
        label="Date",
        widget=django_filters.widgets.DateRangeWidget(attrs={"type": "date"}),
    )

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_action(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        """`analysis.` (ending with a dot) is a prefix: every analysis event; otherwise exact."""
        if not value:
            return queryset
        if value.endswith("."):
            return queryset.filter(action__startswith=value.lower())
        return queryset.filter(action=value.lower())

    @property
    def active(self) -> bool:
        """Whether any filter is in force."""
        data = self.form.cleaned_data if self.is_bound and hasattr(self.form, "cleaned_data") else {}
        return any(_is_set(value) for value in data.values())


def _is_set(value: Any) -> bool:
    if isinstance(value, slice):  # a date range
        return value.start is not None or value.stop is not None
    return value not in (None, "")


def audit_filter(*, data: Any, user: Any, request: Any) -> AuditFilter:
    """The events `user` may read, narrowed by `data` (the page's query string)."""
    return AuditFilter(data=data, queryset=audit_events_visible_to(user=user), request=request)
