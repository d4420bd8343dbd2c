"""The audit page and its CSV export: the events the user may read (audit.selectors), narrowed
by the filters in the URL (audit.filters). Both run a constant number of SQL queries per page
or per chunk of rows, whatever the size of the trail."""

from __future__ import annotations

import csv
from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.filters import audit_filter
from audit.presentation import csv_lines, event_rows

AUDIT_PAGE_SIZE = 50
EXPORT_CHUNK_ROWS = 500
_MAX_PAGE_DIGITS = 9


def _bounded_page(value: str | None) -> int:
    """1 unless the URL gives a positive number of at most 9 digits (beyond the last page,
    the paginator answers the last page)."""
    value = (value or "").strip()
    return max(1, int(value)) if value.isdigit() and len(value) <= _MAX_PAGE_DIGITS else 1


@login_required
@require_GET
def audit_page(request: HttpRequest) -> HttpResponse:
    events = audit_filter(data=request.GET, user=request.user, request=request)
    page = Paginator(events.qs, AUDIT_PAGE_SIZE).get_page(_bounded_page(request.GET.get("page")))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit/list.html",
        {
            "filter": events,
            "page": page,
            "rows": event_rows(page.object_list),
            "query": query.urlencode(),
            "filtered": events.active,
        },
    )


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streamed response."""

    def write(self, value: str) -> str:
        return value


@login_required
@require_GET
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered events as CSV (all pages), streamed, with the page's scoping."""
    events = audit_filter(data=request.GET, user=request.user, request=request)
    writer = csv.writer(_Echo())
    lines = (writer.writerow(row) for row in csv_lines(events.qs.iterator(chunk_size=EXPORT_CHUNK_ROWS)))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = datetime.now(tz=timezone.get_current_timezone()).strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
