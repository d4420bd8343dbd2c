"""Reads of comparisons, scoped to the user asking: which analyses, and may this viewer see them.

Every check is one question to `analyses_visible_to(user=...)` (the analyses' own rule, never
copied here): a comparison is visible to its owner and to anyone who may see ALL of its
analyses; anyone else gets 404, exactly as for an analysis. An unsaved comparison (its columns
in the URL) is the same check on the analyses the URL names. A difference is visible to whoever
may see both of its analyses.

The share-link pages will authorise differently (a token) and reuse the rendering
(`analyses.compare.presentation.comparison_context`), which only takes `Column`s.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.http import Http404

from analyses.compare.models import MAX_COLUMNS, MIN_COLUMNS, Comparison, ComparisonDifference
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.runs.selectors import analyses_visible_to

# `<uuid>` or `<uuid>:<layer position>` or `<uuid>:<layer position>:<class>` (positions in the
# analysis's selected layers; an empty position means the default layer).
_COLUMN_VALUE = re.compile(r"^([0-9a-fA-F-]{32,36})(?::(\d{0,3})(?::(\d{1,5}))?)?$")
MAX_COLUMN_VALUE_CHARS = 60


class ComparisonError(Exception):
    """A request for a comparison that cannot be answered: `message` is a sentence for the page."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Column:
    """One authorised column: the analysis, the layer shown (full name, "" when the analysis
    has no results yet) and the class whose map the difference row uses (None: predicted)."""

    analysis: Analysis
    layer_name: str
    class_index: int | None = None

    @property
    def ready(self) -> bool:
        return self.analysis.status == AnalysisStatus.SUCCEEDED and bool(self.analysis.manifest)

    @property
    def layers(self) -> list[str]:
        return [
            str(name)
            for name in ((self.analysis.manifest or {}).get("model") or {}).get("selected_layers") or []
        ]

    @property
    def map_class(self) -> int | None:
        return self.class_index if self.class_index is not None else self.analysis.predicted_class

    @property
    def value(self) -> str:
        """The column in the URL's grammar (`<code>:<layer position>[:<class>]`)."""
        position = self.layers.index(self.layer_name) if self.layer_name in self.layers else ""
        suffix = f":{self.class_index}" if self.class_index is not None else ""
        return f"{self.analysis.code}:{position}{suffix}"


@dataclass(frozen=True)
class AuthorisedComparison:
    comparison: Comparison
    columns: list[Column]
    missing: int  # columns the viewer (the owner) may no longer see, or whose analysis is gone


def _layer_for(analysis: Analysis, *, name: str) -> str:
    """`name` if the analysis has that layer, else its last selected layer ("" without results)."""
    layers = [
        str(layer) for layer in ((analysis.manifest or {}).get("model") or {}).get("selected_layers") or []
    ]
    if name in layers:
        return name
    return layers[-1] if layers else ""


def _parse_value(value: str) -> tuple[uuid.UUID, int | None, int | None]:
    match = _COLUMN_VALUE.match(value.strip()) if len(value) <= MAX_COLUMN_VALUE_CHARS else None
    if match is None:
        raise ComparisonError(f"“{value[:MAX_COLUMN_VALUE_CHARS]}” is not an analysis code.")
    try:
        code = uuid.UUID(match.group(1))
    except ValueError:
        raise ComparisonError(f"“{value[:MAX_COLUMN_VALUE_CHARS]}” is not an analysis code.") from None
    position = int(match.group(2)) if match.group(2) else None
    class_index = int(match.group(3)) if match.group(3) else None
    return code, position, class_index


def columns_from_values(*, values: list[str], user: Any) -> list[Column]:
    """The columns an unsaved comparison's URL names (`?a=<code>[:<layer>[:<class>]]`, 2-4 times).

    ComparisonError (400) for a count out of bounds or a malformed value; 404 when any analysis
    does not exist for this user (never which one, as for a single analysis).
    """
    if len(values) < MIN_COLUMNS or len(values) > MAX_COLUMNS:
        raise ComparisonError(
            f"A comparison shows {MIN_COLUMNS} to {MAX_COLUMNS} columns; {len(values)} "
            f"{'was' if len(values) == 1 else 'were'} given. Select {MIN_COLUMNS}–{MAX_COLUMNS} analyses or layers."
        )
    parsed = [_parse_value(value) for value in values]
    codes = {code for code, _position, _class in parsed}
    found = {analysis.code: analysis for analysis in analyses_visible_to(user=user).filter(code__in=codes)}
    if len(found) != len(codes):
        raise Http404("No such analysis")
    columns = []
    for code, position, class_index in parsed:
        analysis = found[code]
        layers = [
            str(layer)
            for layer in ((analysis.manifest or {}).get("model") or {}).get("selected_layers") or []
        ]
        if position is not None and position >= len(layers):
            raise ComparisonError(f"The analysis “{analysis}” has no layer number {position}.")
        name = layers[position] if position is not None else _layer_for(analysis, name="")
        columns.append(Column(analysis=analysis, layer_name=name, class_index=class_index))
    return columns


def comparisons_owned_by(*, user: Any) -> Any:
    return (
        Comparison.objects.filter(owner=user)
        if getattr(user, "is_authenticated", False)
        else Comparison.objects.none()
    )


def comparison_get_for_user(*, code: Any, user: Any) -> AuthorisedComparison:
    """The saved comparison with its authorised columns; 404 unless the user owns it or may see
    every one of its analyses. Its owner still sees it when some analyses became invisible to
    them (or were deleted): those columns are left out and counted in `missing`."""
    try:
        parsed = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except (ValueError, TypeError, AttributeError):
        raise Http404("No such comparison") from None
    comparison = Comparison.objects.filter(code=parsed).select_related("owner").first()
    if comparison is None or not getattr(user, "is_authenticated", False):
        raise Http404("No such comparison")
    stored = list(comparison.columns.order_by("position"))
    visible = {
        analysis.pk: analysis
        for analysis in analyses_visible_to(user=user).filter(
            pk__in=[column.analysis_id for column in stored]
        )
    }
    is_owner = comparison.owner_id == user.pk
    if not is_owner and (len(visible) != len({column.analysis_id for column in stored}) or not stored):
        raise Http404("No such comparison")
    columns = [
        Column(
            analysis=visible[column.analysis_id],
            layer_name=_layer_for(visible[column.analysis_id], name=column.layer_name),
            class_index=column.class_index,
        )
        for column in stored
        if column.analysis_id in visible
    ]
    return AuthorisedComparison(comparison=comparison, columns=columns, missing=len(stored) - len(columns))


def comparison_columns_for_link(*, comparison: Comparison) -> list[Column]:
    """Every column of a saved comparison, for a share link whose maker was checked to be
    allowed to share each of its analyses (analyses.sharing); not scoped to a viewer."""
    stored = list(comparison.columns.select_related("analysis", "analysis__classifier").order_by("position"))
    return [
        Column(
            analysis=column.analysis,
            layer_name=_layer_for(column.analysis, name=column.layer_name),
            class_index=column.class_index,
        )
        for column in stored
    ]


def difference_get_for_analyses(*, code: Any, analysis_ids: set[int]) -> ComparisonDifference:
    """A difference between two of these analyses (a share link's columns); 404 otherwise."""
    try:
        parsed = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except (ValueError, TypeError, AttributeError):
        raise Http404("No such difference") from None
    difference = ComparisonDifference.objects.filter(
        code=parsed, analysis_a__in=analysis_ids, analysis_b__in=analysis_ids
    ).first()
    if difference is None:
        raise Http404("No such difference")
    return difference


def difference_get_for_user(*, code: Any, user: Any) -> ComparisonDifference:
    """A difference whose two analyses the user may both see; 404 otherwise."""
    try:
        parsed = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except (ValueError, TypeError, AttributeError):
        raise Http404("No such difference") from None
    visible = analyses_visible_to(user=user).values("pk")
    difference = (
        ComparisonDifference.objects.filter(code=parsed, analysis_a__in=visible, analysis_b__in=visible)
        .select_related("analysis_a", "analysis_b")
        .first()
    )
    if difference is None:
        raise Http404("No such difference")
    return difference


def difference_for_pair(*, column_a: Column, column_b: Column) -> ComparisonDifference | None:
    """The stored difference of two authorised columns, if one was requested before."""
    if column_a.map_class is None or column_b.map_class is None:
        return None
    return ComparisonDifference.objects.filter(
        analysis_a=column_a.analysis,
        layer_a=column_a.layer_name,
        class_a=column_a.map_class,
        analysis_b=column_b.analysis,
        layer_b=column_b.layer_name,
        class_b=column_b.map_class,
    ).first()
