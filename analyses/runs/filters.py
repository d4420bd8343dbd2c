"""The analysis history's filters: one FilterSet for the history page, the library pages'
lists and (later) the REST API.

It only narrows a queryset it is given: `history_filter` feeds it the visibility selector
(`analyses_visible_to`), so the permission rules live in one place. Every value a user sends is
bounded before use; a value that does not parse becomes a form error and its filter is ignored
(the rest still apply), never a server error. Everything here runs a constant number of SQL
queries, whatever the number of analyses: the filters and sorts are on indexed columns
(`confidence` and `is_correct` are denormalised from `predictions` by state.analysis_publish).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django.http import QueryDict

from accounts.models import Team
from analyses.access import is_anonymous, shared_with
from analyses.library.selectors import classifiers_visible_to, videos_visible_to
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.runs.params import METHODS
from analyses.runs.selectors import analyses_visible_to

MAX_SEARCH_CHARS = 100
MAX_CLASS_INDEX = 100_000
MAX_LABEL_VALUE_CHARS = 100

OUTCOME_CHOICES = (("correct", "Correct"), ("wrong", "Wrong"), ("unknown", "No expected class"))
_OUTCOME_LOOKUPS: dict[str, dict[str, Any]] = {
    "correct": {"is_correct": True},
    "wrong": {"is_correct": False},
    "unknown": {"is_correct__isnull": True},
}

SORT_CHOICES = (
    ("-date", "Newest first"),
    ("date", "Oldest first"),
    ("-confidence", "Most confident"),
    ("confidence", "Least confident"),
    ("classifier", "Classifier A–Z"),
    ("video", "Video A–Z"),
)
# Each ends with the primary key, so pages never overlap or skip rows on ties.
_SORTS: dict[str, tuple[Any, ...]] = {
    "-date": (F("created_at").desc(), F("pk").desc()),
    "date": (F("created_at").asc(), F("pk").asc()),
    "-confidence": (F("confidence").desc(nulls_last=True), F("created_at").desc(), F("pk").desc()),
    "confidence": (F("confidence").asc(nulls_last=True), F("created_at").desc(), F("pk").desc()),
    "classifier": (F("classifier__name").asc(), F("created_at").desc(), F("pk").desc()),
    "video": (F("video__name").asc(), F("created_at").desc(), F("pk").desc()),
}
DEFAULT_SORT = "-date"


def _label_matches(*, user: Any, text: str, exact: bool) -> dict[int, list[int]]:
    """Class index -> ids of the visible classifiers whose label at that index matches `text`
    (case-insensitive; whole label when `exact`, part of it otherwise). One query."""
    needle = text.casefold()
    matches: dict[int, list[int]] = defaultdict(list)
    rows = classifiers_visible_to(user=user, include_archived=True).values_list("pk", "class_labels")
    for classifier_id, labels in rows:
        for index, label in enumerate(labels or []):
            label = str(label or "").casefold()
            if label and (label == needle if exact else needle in label):
                matches[index].append(classifier_id)
    return matches


def _class_q(field: str, matches: dict[int, list[int]]) -> Q:
    """Rows whose `field` (predicted_class / expected_class) is one of the matched labels."""
    query = Q(pk__in=[])
    for index, classifier_ids in matches.items():
        query |= Q(**{field: index, "classifier_id__in": classifier_ids})
    return query


class ClassField(forms.CharField):
    """A class given by its index (0 … MAX_CLASS_INDEX) or by its label."""

    def clean(self, value: Any) -> Any:
        value = super().clean(value)
        if value and value.lstrip("-").isdigit():
            if len(value) > 7 or not 0 <= int(value) <= MAX_CLASS_INDEX:
                raise forms.ValidationError(f"A class index is between 0 and {MAX_CLASS_INDEX}.")
            return int(value)
        return value


class ClassFilter(django_filters.Filter):
    field_class = ClassField


def _classifiers(request: Any) -> QuerySet:
    return classifiers_visible_to(user=_user(request), include_archived=True).order_by("name", "pk")


def _videos(request: Any) -> QuerySet:
    return videos_visible_to(user=_user(request), include_archived=True).order_by("name", "pk")


def _teams(request: Any) -> QuerySet:
    user = _user(request)
    if is_anonymous(user):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).order_by("name", "pk")


def _owners(request: Any) -> QuerySet:
    """The user and everyone sharing a team with them: the people whose analyses they can see."""
    user = _user(request)
    if is_anonymous(user):
        return get_user_model().objects.none()
    teams = Team.objects.filter(memberships__user=user).values("pk")
    return (
        get_user_model()
        .objects.filter(Q(pk=user.pk) | Q(team_memberships__team__in=teams))
        .distinct()
        .order_by("username")
    )


def _user(request: Any) -> Any:
    return getattr(request, "user", None)


class HistoryFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_search", label="Search", max_length=MAX_SEARCH_CHARS, strip=True
    )
    classifier = django_filters.ModelChoiceFilter(
        queryset=_classifiers, to_field_name="code", empty_label="Any classifier"
    )
    video = django_filters.ModelChoiceFilter(queryset=_videos, to_field_name="code", empty_label="Any video")
    status = django_filters.ChoiceFilter(choices=AnalysisStatus.choices, empty_label="Any status")
    outcome = django_filters.ChoiceFilter(
        choices=OUTCOME_CHOICES, method="filter_outcome", label="Correct / wrong", empty_label="Any outcome"
    )
    predicted = ClassFilter(
        method="filter_class",
        label="Predicted class",
        max_length=MAX_LABEL_VALUE_CHARS,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Label or index"}),
    )
    expected = ClassFilter(
        method="filter_class",
        label="Expected class",
        max_length=MAX_LABEL_VALUE_CHARS,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Label or index"}),
    )
    method = django_filters.ChoiceFilter(
        choices=[(name, name) for name in METHODS], label="Method", empty_label="Any method"
    )
    owner = django_filters.ModelChoiceFilter(
        queryset=_owners, to_field_name="username", empty_label="Anyone", label="Owner"
    )
    team = django_filters.ModelChoiceFilter(
        queryset=_teams, to_field_name="code", empty_label="Any team", label="Team"
    )
    shared = django_filters.BooleanFilter(
        method="filter_shared", label="Shared with me", widget=forms.CheckboxInput
    )
    created = django_filters.DateFromToRangeFilter(
        field_name="created_at",
        label="Date",
        widget=django_filters.widgets.DateRangeWidget(attrs={"type": "date"}),
    )
    sort = django_filters.ChoiceFilter(
        choices=SORT_CHOICES, method="filter_sort", label="Sort by", empty_label=None
    )

    class Meta:
        model = Analysis
        fields: list[str] = []

    def filter_search(self, queryset: QuerySet[Analysis], name: str, value: str) -> QuerySet[Analysis]:
        if not value:
            return queryset
        matches = _label_matches(user=_user(self.request), text=value, exact=False)
        return queryset.filter(
            Q(title__icontains=value)
            | Q(classifier__name__icontains=value)
            | Q(video__name__icontains=value)
            | Q(owner__username__icontains=value)
            | Q(team__name__icontains=value)
            | _class_q("predicted_class", matches)
            | _class_q("expected_class", matches)
        )

    def filter_outcome(self, queryset: QuerySet[Analysis], name: str, value: str) -> QuerySet[Analysis]:
        return queryset.filter(**_OUTCOME_LOOKUPS[value]) if value in _OUTCOME_LOOKUPS else queryset

    def filter_class(self, queryset: QuerySet[Analysis], name: str, value: Any) -> QuerySet[Analysis]:
        field = "predicted_class" if name == "predicted" else "expected_class"
        if value in (None, ""):
            return queryset
        if isinstance(value, int):
            return queryset.filter(**{field: value})
        return queryset.filter(
            _class_q(field, _label_matches(user=_user(self.request), text=value, exact=True))
        )

    def filter_shared(self, queryset: QuerySet[Analysis], name: str, value: Any) -> QuerySet[Analysis]:
        return shared_with(queryset, user=_user(self.request)) if value else queryset

    def filter_sort(self, queryset: QuerySet[Analysis], name: str, value: str) -> QuerySet[Analysis]:
        return queryset  # applied last, in `qs`, so it also holds when no filter is given

    @property
    def qs(self) -> QuerySet[Analysis]:
        queryset = super().qs
        sort = (
            self.form.cleaned_data.get("sort") if self.is_bound and hasattr(self.form, "cleaned_data") else ""
        )
        return queryset.order_by(*_SORTS.get(sort or DEFAULT_SORT, _SORTS[DEFAULT_SORT]))

    @property
    def active(self) -> bool:
        """Whether any filter or search is in force (the sort alone does not count)."""
        data = self.form.cleaned_data if self.is_bound and hasattr(self.form, "cleaned_data") else {}
        return any(_is_set(value) for name, value in data.items() if name != "sort")


def _is_set(value: Any) -> bool:
    if isinstance(value, slice):  # a date range
        return value.start is not None or value.stop is not None
    return value not in (None, "", False)


def history_preview(*, user: Any, preset: dict[str, str], limit: int = 10) -> dict[str, Any]:
    """The newest `limit` analyses of the history with `preset` filters (a classifier's or a
    video's page), how many there are, and the query string of the full filtered history."""
    history = history_filter(data=QueryDict(), user=user, preset=preset)
    return {
        "analyses": list(history.qs[: max(1, min(limit, 100))]),
        "count": history.qs.count(),
        "query": urlencode(preset),
    }


def history_filter(
    *, data: Any, user: Any, request: Any = None, preset: dict[str, str] | None = None
) -> HistoryFilter:
    """The history of what `user` may see, narrowed by `data` (a QueryDict: the page's URL), with
    `preset` values (e.g. {"classifier": code} on a classifier's page) taking precedence."""
    if preset:
        data = data.copy() if hasattr(data, "copy") else dict(data)
        for key, value in preset.items():
            data[key] = value
    return HistoryFilter(
        data=data, queryset=analyses_visible_to(user=user), request=request or _Request(user)
    )


class _Request:
    """What the filter needs of a request when it is used outside one (tests, the API, bench)."""

    def __init__(self, user: Any) -> None:
        self.user = user
