"""Sharing pages: share and revoke, share links (made, revoked, and followed without login), and
"Shared with me". Views parse, call a service or selector, and render."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import team_get_for_user
from analyses.compare.models import Comparison
from analyses.compare.selectors import (
    Column,
    comparison_columns_for_link,
    comparison_get_for_user,
    difference_for_pair,
    difference_get_for_analyses,
)
from analyses.compare.views import difference_file_response, link_difference_payload, render_comparison
from analyses.library.selectors import classifier_get_for_user, video_get_for_user
from analyses.runs.models import Analysis
from analyses.runs.presentation import result_context
from analyses.runs.selectors import analysis_get_for_user
from analyses.runs.views import result_file_response, result_zip_response, status_payload
from analyses.sharing import selectors, services
from analyses.sharing.models import ShareLink
from analyses.sharing.services import Shareable, SharingError

_GETTERS: dict[str, Callable[..., Shareable]] = {
    "analysis": analysis_get_for_user,
    "classifier": classifier_get_for_user,
    "video": video_get_for_user,
}
_DETAIL_ROUTES = {
    "analysis": "analyses_run:detail",
    "classifier": "library:classifier_detail",
    "video": "library:video_detail",
}


def _target_page(target: Shareable) -> HttpResponse:
    return redirect(_DETAIL_ROUTES[target._meta.model_name or ""], code=target.code)


def _get_target(*, kind: str, code: uuid.UUID, user: Any) -> Shareable:
    getter = _GETTERS.get(kind)
    if getter is None:
        raise Http404("No such object")
    return getter(code=code, user=user)


@login_required
@require_POST
def share_create_view(request: HttpRequest, kind: str, code: uuid.UUID) -> HttpResponse:
    target = _get_target(kind=kind, code=code, user=request.user)
    team_code = (request.POST.get("team") or "").strip()
    try:
        team = team_get_for_user(code=team_code, user=request.user) if team_code else None
        made = services.share_create(
            actor=request.user,
            target=target,
            username=request.POST.get("username") or "",
            team=team,
            with_inputs=request.POST.get("with_inputs") == "on",
        )
    except SharingError as exc:
        messages.error(request, str(exc))
    except Http404:
        messages.error(request, "You can share only with a team you belong to.")
    else:
        names = ", ".join(sorted({share.recipient_name for share in made}))
        messages.success(
            request, f"Shared read-only with {names}." if made else "It was shared with them already."
        )
    return _target_page(target)


@login_required
@require_POST
def share_revoke_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    share = selectors.share_get_for_user(code=code, user=request.user)
    target = share.target
    try:
        services.share_revoke(actor=request.user, share=share)
    except SharingError as exc:
        return render(request, "403.html", {"exception": str(exc)}, status=403)
    messages.success(
        request, "Share revoked: they no longer see it (unless another share or a team gives it)."
    )
    return _target_page(target)


def _link_create(request: HttpRequest, *, target: Analysis | Comparison, back: HttpResponse) -> HttpResponse:
    """Make a share link from the posted form: the page showing it once, or `back` with why not."""
    try:
        link, token = services.share_link_create(
            actor=request.user,
            target=target,
            days=request.POST.get("days") or services.LINK_DEFAULT_DAYS,
            label=request.POST.get("label") or "",
        )
    except SharingError as exc:
        messages.error(request, str(exc))
        return back
    url = request.build_absolute_uri(reverse("sharing:link_page", kwargs={"token": token}))
    kind = "comparison" if isinstance(target, Comparison) else "analysis"
    response = render(request, "analyses/sharing/link_created.html", {kind: target, "link": link, "url": url})
    response["Cache-Control"] = "no-store"  # the token is shown this once
    return response


@login_required
@require_POST
def share_link_create_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    analysis = analysis_get_for_user(code=code, user=request.user)
    return _link_create(request, target=analysis, back=_target_page(analysis))


@login_required
@require_POST
def share_link_revoke_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    link = selectors.share_link_get_for_user(code=code, user=request.user)
    try:
        services.share_link_revoke(actor=request.user, link=link)
    except SharingError as exc:
        return render(request, "403.html", {"exception": str(exc)}, status=403)
    messages.success(request, "Share link revoked: it no longer opens anything.")
    if link.comparison is not None:
        return redirect("compare:detail", code=link.comparison.code)
    assert link.analysis is not None
    return _target_page(link.analysis)


@login_required
@require_GET
def shared_with_me(request: HttpRequest) -> HttpResponse:
    new_count = selectors.shared_new_count(user=request.user)
    items = selectors.shared_items_for(user=request.user)
    services.inbox_mark_seen(user=request.user)
    return render(request, "analyses/sharing/shared_with_me.html", {"items": items, "new_count": new_count})


@login_required
@require_POST
def comparison_link_create_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    comparison = comparison_get_for_user(code=code, user=request.user).comparison
    return _link_create(request, target=comparison, back=redirect("compare:detail", code=comparison.code))


# --------------------------------------------------------------------------- share link pages
def _live_link(token: str) -> ShareLink:
    link = selectors.share_link_live(token=token)
    if link is None:
        raise Http404("This share link does not exist, was revoked, or has expired.")
    return link


def _no_store(response: HttpResponseBase) -> HttpResponseBase:
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _link_columns(link: ShareLink) -> list[Column]:
    """The columns of a comparison link: every analysis of the comparison (the link checked that
    its maker may share each one)."""
    assert link.comparison is not None
    return comparison_columns_for_link(comparison=link.comparison)


def _link_analysis(link: ShareLink, code: uuid.UUID) -> Analysis:
    """The analysis the link shows with this code: its own, or one column's of its comparison."""
    if link.analysis is not None:
        if link.analysis.code != code:
            raise Http404("No such result file")
        return link.analysis
    for column in _link_columns(link):
        if column.analysis.code == code:
            return column.analysis
    raise Http404("No such result file")


@login_not_required  # the token is the permission, checked by _live_link
@require_GET
def link_page(request: HttpRequest, token: str) -> HttpResponseBase:
    link = _live_link(token)
    services.share_link_followed(link=link, address=request.META.get("REMOTE_ADDR") or "")
    if link.comparison is not None:
        return _no_store(_comparison_link_page(request, token=token, link=link))
    analysis = link.analysis
    assert analysis is not None
    context = {
        "analysis": analysis,
        "link": link,
        "status": status_payload(analysis),
        **result_context(
            analysis,
            file_url=lambda shown, path: reverse(
                "sharing:link_file", kwargs={"token": token, "code": shown.code, "path": path}
            ),
            zip_url=reverse("sharing:link_zip", kwargs={"token": token}),
        ),
    }
    return _no_store(render(request, "analyses/sharing/link_result.html", context))


def _comparison_link_page(request: HttpRequest, *, token: str, link: ShareLink) -> HttpResponse:
    def file_url(analysis: Any, path: str) -> str:
        return reverse("sharing:link_file", kwargs={"token": token, "code": analysis.code, "path": path})

    def difference_state(column_a: Column, column_b: Column) -> dict[str, Any]:
        stored = difference_for_pair(column_a=column_a, column_b=column_b)
        return link_difference_payload(
            stored,
            column_a=column_a,
            column_b=column_b,
            file_url=lambda difference, name: reverse(
                "sharing:link_difference_file", kwargs={"token": token, "code": difference.code, "path": name}
            ),
        )

    return render_comparison(
        request,
        columns=_link_columns(link),
        file_url=file_url,
        extra={"comparison": link.comparison, "can_delete": False, "shared_link": link},
        difference_state=difference_state,
    )


@login_not_required  # the token is the permission, checked by _live_link
@require_GET
def link_file(request: HttpRequest, token: str, code: uuid.UUID, path: str) -> HttpResponseBase:
    link = _live_link(token)
    analysis = _link_analysis(link, code)
    return _no_store(
        result_file_response(request, analysis=analysis, path=path, via=f"share link {link.code}")
    )


@login_not_required  # the token is the permission, checked by _live_link
@require_GET
def link_difference_file(request: HttpRequest, token: str, code: uuid.UUID, path: str) -> HttpResponseBase:
    link = _live_link(token)
    if link.comparison is None:
        raise Http404("No such difference")
    analyses = {column.analysis.pk for column in _link_columns(link)}
    difference = difference_get_for_analyses(code=code, analysis_ids=analyses)
    return _no_store(difference_file_response(request, difference=difference, path=path))


@login_not_required  # the token is the permission, checked by _live_link
@require_GET
def link_zip(request: HttpRequest, token: str) -> HttpResponseBase:
    link = _live_link(token)
    if link.analysis is None:
        raise Http404("A comparison has no ZIP: download each analysis's from its own page")
    response = result_zip_response(request, analysis=link.analysis, via=f"share link {link.code}")
    _no_store(response)
    return response
