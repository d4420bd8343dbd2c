"""The Verify action of an analysis page and the status its verification polls.

Anyone who may see the analysis may verify it (it changes nothing in the analysis): the
analysis is looked up with `analysis_get_for_user` (an outsider gets 404), never for writing.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from analyses.runs import selectors
from analyses.runs.provenance import verification_payload
from analyses.runs.verification import VerificationError, verification_of_analysis, verification_request


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _back_to_page(code: uuid.UUID) -> HttpResponse:
    return redirect(reverse("analyses_run:detail", kwargs={"code": code}) + "#verification")


@login_required
@require_POST
def analysis_verify_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user)
    try:
        verification = verification_request(user=request.user, analysis=analysis)
    except VerificationError as exc:
        if _wants_json(request):
            return JsonResponse({"ok": False, "error": exc.message}, status=409)
        messages.error(request, exc.message)
        return _back_to_page(analysis.code)
    if _wants_json(request):
        return JsonResponse({"ok": True, **verification_payload(verification)}, status=202)
    messages.success(
        request,
        "Verification queued: the worker re-runs this analysis and compares its maps with the stored ones.",
    )
    return _back_to_page(analysis.code)


@login_required
@require_GET
def verification_status(request: HttpRequest, code: uuid.UUID, verification_code: uuid.UUID) -> JsonResponse:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user)
    verification = verification_of_analysis(analysis=analysis, code=verification_code)
    if verification is None:
        raise Http404("No such verification")
    response = JsonResponse(verification_payload(verification))
    response["Cache-Control"] = "no-store"
    return response
