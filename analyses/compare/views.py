"""Comparison pages: an unsaved comparison from its URL, save, a saved one, delete, the layer /
re-run chooser, and the difference row (request, status, files).

Views only parse, call a selector or service, and render. Who may see what is decided by the
selectors (`columns_from_values`, `comparison_get_for_user`, `difference_get_for_user`), all
built on `analyses_visible_to`; the page itself is `_render_comparison`, which takes already
authorised columns and the function naming their files (a share-link page passes its own).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from analyses.compare import selectors
from analyses.compare.models import MAX_COLUMNS, MIN_COLUMNS, ComparisonDifference, DifferenceStatus
from analyses.compare.presentation import DifferencePayload, comparison_context
from analyses.compare.selectors import Column, ComparisonError
from analyses.compare.services import comparison_create, comparison_delete, difference_request
from analyses.files import clean_result_name, stored_result_response
from analyses.runs.presentation import FileUrl
from analyses.runs.selectors import analyses_visible_to, analysis_get_for_user
from analyses.sharing.presentation import comparison_link_panel

_MAX_VALUES = 20  # read at most this many `a` values before counting them


def analysis_file_url(analysis: Any, path: str) -> str:
    """Result files of a logged-in comparison: the analysis's own checked file view."""
    return reverse("analyses_run:file", kwargs={"code": analysis.code, "path": path})


def difference_payload(
    difference: ComparisonDifference | None, *, column_a: Column, column_b: Column
) -> dict[str, Any]:
    """What the page polls about one difference row (and what it needs to request it)."""
    payload: dict[str, Any] = {
        "a": column_a.value,
        "b": column_b.value,
        "request_url": reverse("compare:difference_request"),
        "status": "none",
        "message": "",
    }
    if difference is None:
        return payload
    payload.update(
        {
            "code": str(difference.code),
            "status": difference.status,
            "message": difference.message,
            "status_url": reverse("compare:difference_status", kwargs={"code": difference.code}),
        }
    )
    if difference.status == DifferenceStatus.READY:
        payload.update(
            _ready_fields(
                difference,
                file_url=lambda done, name: reverse(
                    "compare:difference_file", kwargs={"code": done.code, "path": name}
                ),
            )
        )
    return payload


def _ready_fields(
    difference: ComparisonDifference, *, file_url: Callable[[ComparisonDifference, str], str]
) -> dict[str, Any]:
    """A finished difference's images (named by `file_url`) and statistics."""
    result = difference.result or {}
    return {
        "frames": [file_url(difference, name) for name in result.get("frames") or []],
        "legend_url": file_url(difference, str(result.get("legend") or "legend.png")),
        "mean_abs": result.get("mean_abs"),
        "max_abs": result.get("max_abs"),
        "mean_abs_per_frame": result.get("mean_abs_per_frame") or [],
    }


def link_difference_payload(
    difference: ComparisonDifference | None,
    *,
    column_a: Column,
    column_b: Column,
    file_url: Callable[[ComparisonDifference, str], str],
) -> dict[str, Any]:
    """A difference row as a share link shows it: read-only (nothing can be requested), only a
    difference already computed, its files named by the link's own checked view."""
    if difference is None or difference.status != DifferenceStatus.READY:
        return {
            "a": column_a.value,
            "b": column_b.value,
            "status": "unavailable",
            "message": "Not computed yet: it appears here once someone signed in computes it.",
        }
    return {
        "a": column_a.value,
        "b": column_b.value,
        "status": "ready",
        "message": "",
        **_ready_fields(difference, file_url=file_url),
    }


def _stored_difference_payload(column_a: Column, column_b: Column) -> dict[str, Any]:
    stored = selectors.difference_for_pair(column_a=column_a, column_b=column_b)
    return difference_payload(stored, column_a=column_a, column_b=column_b)


def render_comparison(
    request: HttpRequest,
    *,
    columns: list[Column],
    file_url: FileUrl,
    extra: dict[str, Any],
    difference_state: DifferencePayload = _stored_difference_payload,
) -> HttpResponse:
    """The comparison page for columns someone already authorised. `file_url` names result
    files and `difference_state` describes a pair's difference row (its status and file URLs):
    a page reached another way (a share link) passes its own checked views for both."""
    context = comparison_context(columns=columns, file_url=file_url, difference_payload=difference_state)
    context.update(extra)
    return render(request, "analyses/compare/page.html", context)


def _error_page(request: HttpRequest, error: ComparisonError) -> HttpResponse:
    return render(
        request,
        "analyses/compare/error.html",
        {"message": error.message, "min_columns": MIN_COLUMNS, "max_columns": MAX_COLUMNS},
        status=error.status,
    )


def _values(request: HttpRequest, source: Any) -> list[str]:
    return [str(value) for value in source.getlist("a")[:_MAX_VALUES]] + (
        ["…"] * max(0, len(source.getlist("a")) - _MAX_VALUES)
    )


@login_required
@require_GET
def compare_page(request: HttpRequest) -> HttpResponse:
    """An unsaved comparison: `?a=<code>[:<layer>[:<class>]]`, 2-4 times."""
    try:
        columns = selectors.columns_from_values(values=_values(request, request.GET), user=request.user)
    except ComparisonError as error:
        return _error_page(request, error)
    return render_comparison(
        request, columns=columns, file_url=analysis_file_url, extra={"comparison": None, "can_delete": False}
    )


@login_required
@require_POST
def comparison_save(request: HttpRequest) -> HttpResponse:
    try:
        columns = selectors.columns_from_values(values=_values(request, request.POST), user=request.user)
        comparison = comparison_create(
            user=request.user, title=request.POST.get("title", ""), columns=columns
        )
    except ComparisonError as error:
        return _error_page(request, error)
    messages.success(request, "Comparison saved: this page has its own address now.")
    return redirect("compare:detail", code=comparison.code)


@login_required
@require_GET
def comparison_detail(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    authorised = selectors.comparison_get_for_user(code=code, user=request.user)
    comparison = authorised.comparison
    extra = {
        "comparison": comparison,
        "missing": authorised.missing,
        "can_delete": comparison.owner_id == request.user.pk,
        **comparison_link_panel(user=request.user, comparison=comparison),
    }
    if len(authorised.columns) < MIN_COLUMNS:
        return render(request, "analyses/compare/gone.html", extra)
    return render_comparison(request, columns=authorised.columns, file_url=analysis_file_url, extra=extra)


@login_required
@require_POST
def comparison_delete_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    authorised = selectors.comparison_get_for_user(code=code, user=request.user)
    comparison_delete(user=request.user, comparison=authorised.comparison)
    messages.success(request, "Comparison deleted (its analyses are untouched).")
    return redirect("analyses_run:list")


@login_required
@require_GET
def compare_choose(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """Choose 2-4 layers of one analysis, or it and its re-runs / the analysis it re-runs."""
    analysis = analysis_get_for_user(code=code, user=request.user)
    visible = analyses_visible_to(user=request.user)
    related = []
    if analysis.parent_id:
        related += list(visible.filter(pk=analysis.parent_id))
    related += list(visible.filter(parent=analysis).order_by("created_at"))
    related += list(
        visible.filter(parent_id=analysis.parent_id).exclude(pk=analysis.pk).order_by("created_at")
        if analysis.parent_id
        else []
    )
    layers = [
        str(name) for name in ((analysis.manifest or {}).get("model") or {}).get("selected_layers") or []
    ]
    return render(
        request,
        "analyses/compare/choose.html",
        {
            "analysis": analysis,
            "layers": [{"position": index, "name": name} for index, name in enumerate(layers)],
            "related": related[: 3 * MAX_COLUMNS],
            "mode": "reruns" if request.GET.get("mode") == "reruns" else "layers",
            "min_columns": MIN_COLUMNS,
            "max_columns": MAX_COLUMNS,
        },
    )


# --------------------------------------------------------------------------- the difference row
@login_required
@require_POST
def difference_request_view(request: HttpRequest) -> JsonResponse:
    """Queue (or find) the difference of two columns the user may see: `a=<value>&b=<value>`."""
    try:
        column_a, column_b = selectors.columns_from_values(
            values=[request.POST.get("a", "")[:80], request.POST.get("b", "")[:80]], user=request.user
        )
        difference = difference_request(user=request.user, column_a=column_a, column_b=column_b)
    except ComparisonError as error:
        return JsonResponse({"ok": False, "error": error.message}, status=error.status)
    return JsonResponse(
        {"ok": True, **difference_payload(difference, column_a=column_a, column_b=column_b)}, status=202
    )


def _difference_columns(difference: ComparisonDifference) -> tuple[Column, Column]:
    return (
        Column(analysis=difference.analysis_a, layer_name=difference.layer_a, class_index=difference.class_a),
        Column(analysis=difference.analysis_b, layer_name=difference.layer_b, class_index=difference.class_b),
    )


@login_required
@require_GET
def difference_status(request: HttpRequest, code: uuid.UUID) -> JsonResponse:
    difference = selectors.difference_get_for_user(code=code, user=request.user)
    column_a, column_b = _difference_columns(difference)
    response = JsonResponse(difference_payload(difference, column_a=column_a, column_b=column_b))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def difference_file(request: HttpRequest, code: uuid.UUID, path: str) -> HttpResponseBase:
    """A difference image or its legend, after the same check as the difference's status."""
    difference = selectors.difference_get_for_user(code=code, user=request.user)
    return difference_file_response(request, difference=difference, path=path)


def difference_file_response(
    request: HttpRequest, *, difference: ComparisonDifference, path: str
) -> HttpResponseBase:
    """One listed file of a difference the caller has already authorised."""
    result = difference.result or {}
    listed = {*map(str, result.get("frames") or []), str(result.get("legend") or "")}
    if difference.status != DifferenceStatus.READY or clean_result_name(path) is None or path not in listed:
        raise Http404("No such difference file")
    return stored_result_response(
        request, results_dir=difference.results_dir, name=path, content_type="image/png"
    )
