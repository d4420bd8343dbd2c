"""Analysis pages: list, new (with the preprocessing preview), progress / result, files, ZIP,
re-run, cancel, delete.

Views only parse, call a service or selector, and render. Every analysis is looked up through
`analysis_get_for_user`, so an outsider gets 404 and a read-only team member 403 on writes;
result files are served only when listed in the analysis's manifest, after the same check as
the page, with HTTP Range support (video seeking).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from analyses import storage
from analyses.access import can_write
from analyses.files import (
    clean_result_name,
    private_file_response,
    result_media_type,
    stored_result_response,
)
from analyses.library import selectors as library_selectors
from analyses.library.models import Classifier, Preview, ProcessingStatus
from analyses.runs import selectors
from analyses.runs.archive import (
    archive_storage_name,
    listed_result_names,
    local_members,
    prebuilt_archive_exists,
    stored_members,
    zip_stream,
)
from analyses.runs.filters import history_filter
from analyses.runs.forms import AnalysisForm, initial_from_analysis
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.runs.params import ELEMENTWISE_METHODS, AnalysisError
from analyses.runs.presentation import history_rows, result_context
from analyses.runs.previews import PreviewError, preview_clip_name, preview_create
from analyses.runs.provenance import provenance_context
from analyses.runs.services import (
    analysis_cancel,
    analysis_create,
    analysis_delete,
    analysis_record_read,
    analysis_rerun,
)
from analyses.runs.verification import verifications_recent
from analyses.sharing.presentation import sharing_panel

HISTORY_PAGE_SIZE = 25


# --------------------------------------------------------------------------- helpers
def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _percent(progress: float | None) -> int:
    return int(round(max(0.0, min(1.0, float(progress or 0.0))) * 100))


def status_payload(analysis: Analysis) -> dict[str, Any]:
    """What the progress page polls: small, and only this analysis's own fields."""
    classifier = analysis.classifier
    return {
        "code": str(analysis.code),
        "status": analysis.status,
        "status_label": analysis.get_status_display(),
        "stage": analysis.stage,
        "progress": _percent(analysis.progress),
        "active": analysis.is_active,
        "predicted_class": analysis.predicted_class,
        "predicted_label": classifier.label_for(analysis.predicted_class)
        if analysis.predicted_class is not None
        else "",
        "expected_class": analysis.expected_class,
        "expected_label": classifier.label_for(analysis.expected_class)
        if analysis.expected_class is not None
        else "",
        "error_message": analysis.error_message if analysis.status == AnalysisStatus.FAILED else "",
        "url": reverse("analyses_run:detail", kwargs={"code": analysis.code}),
    }


def _form_data_for_js(*, user: Any, extra_classifier: Classifier | None = None) -> dict[str, Any]:
    """Per classifier: labels and layers (to rebuild the class select and layer boxes);
    per video: its expected class (the default expected class)."""
    classifiers = list(library_selectors.classifiers_usable_by(user=user))
    if extra_classifier is not None and extra_classifier not in classifiers:
        classifiers.append(extra_classifier)
    return {
        "classifiers": {
            str(classifier.code): {
                "name": classifier.name,
                "num_classes": classifier.num_classes,
                "labels": [classifier.label_for(index) for index in range(classifier.num_classes)],
                "layers": [str(layer) for layer in classifier.conv3d_layers or []],
                "input_shape": classifier.input_shape,
                "scaling": _scaling_words(library_selectors.suggested_scaling(classifier=classifier)[0]),
                "scaling_reason": library_selectors.suggested_scaling(classifier=classifier)[1],
            }
            for classifier in classifiers
        },
        "videos": {
            str(video.code): {"expected_class": video.expected_class, "name": video.name}
            for video in library_selectors.videos_usable_by(user=user)
        },
        "elementwise_methods": list(ELEMENTWISE_METHODS),
    }


def _selected_classifier(form: AnalysisForm, *, fixed: Analysis | None) -> Classifier | None:
    if fixed is not None:
        return fixed.classifier
    code = form.data.get("classifier") if form.is_bound else form.initial.get("classifier")
    if not code:
        return None
    try:
        return library_selectors.classifier_get_for_user(code=code, user=form.user)
    except Http404:
        return None


def _field_values(form: AnalysisForm, name: str) -> list[str]:
    if form.is_bound:
        return [str(value) for value in form.data.getlist(name)] if hasattr(form.data, "getlist") else []
    value = form.initial.get(name)
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]


def _scaling_hint(form: AnalysisForm, classifier: Classifier | None) -> str:
    chosen = _field_values(form, "scaling") or [str(form.fields["scaling"].initial)]
    if classifier is None or chosen[0] != "auto":
        return ""
    scaling, reason = library_selectors.suggested_scaling(classifier=classifier)
    return f"This model gets {_scaling_words(scaling)}." + (f" {reason}" if reason else "")


def _render_form(
    request: HttpRequest,
    *,
    form: AnalysisForm,
    fixed: Analysis | None = None,
    preview_error: str = "",
    status: int = 200,
) -> HttpResponse:
    classifier = _selected_classifier(form, fixed=fixed)
    expected_values = _field_values(form, "expected_class")
    chosen_layers = _field_values(form, "layers")
    layer_rows = []
    if classifier is not None:
        all_layers = [str(layer) for layer in classifier.conv3d_layers or []]
        # Nothing chosen yet (a fresh form) means every layer, the default.
        ticked = set(chosen_layers) if (chosen_layers or form.is_bound) else set(all_layers)
        layer_rows = [{"name": layer, "checked": layer in ticked} for layer in all_layers]
    class_options = []
    if classifier is not None:
        class_options = [
            {
                "value": str(index),
                "label": f"{index}: {classifier.label_for(index)}",
                "selected": str(index) in expected_values,
            }
            for index in range(classifier.num_classes)
        ]
    return render(
        request,
        "analyses/analysis/form.html",
        {
            "form": form,
            "fixed": fixed,
            "classifier": classifier,
            "class_options": class_options,
            "layer_rows": layer_rows,
            "preview_error": preview_error,
            "scaling_hint": _scaling_hint(form, classifier),
            "form_data": _form_data_for_js(
                user=request.user, extra_classifier=fixed.classifier if fixed else None
            ),
        },
        status=status,
    )


# --------------------------------------------------------------------------- preview
def preview_payload(preview: Preview) -> dict[str, Any]:
    """What the form polls while a preview is built, and shows once it is ready."""
    result = preview.result or {}
    ready = preview.status == ProcessingStatus.READY
    input_range = result.get("input_range")
    return {
        "code": str(preview.code),
        "status": preview.status,
        "message": preview.status_message,
        "page_url": reverse("analyses_run:preview", kwargs={"code": preview.code}),
        "status_url": reverse("analyses_run:preview_status", kwargs={"code": preview.code}),
        "clip_url": reverse("analyses_run:preview_clip", kwargs={"code": preview.code}) if ready else "",
        "frames": result.get("frames") or [],
        "frame_count": result.get("frame_count") or 0,
        "source_frame_count": result.get("source_frame_count") or 0,
        "scaling": _scaling_words(str((preview.params.get("preprocess") or {}).get("scaling") or "")),
        "input_range": [round(float(value), 4) for value in input_range] if input_range else None,
    }


def _scaling_words(name: str) -> str:
    return {
        "unit": "[0, 1]",
        "symmetric": "[-1, 1]",
        "raw": "0–255 (raw)",
        "mean_std": "(x − mean) / std",
    }.get(name, name)


@login_required
@require_GET
def preview_detail(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    preview = library_selectors.preview_get_for_user(code=code, user=request.user)
    return render(
        request, "analyses/analysis/preview.html", {"preview": preview, "payload": preview_payload(preview)}
    )


@login_required
@require_GET
def preview_status(request: HttpRequest, code: uuid.UUID) -> JsonResponse:
    preview = library_selectors.preview_get_for_user(code=code, user=request.user)
    response = JsonResponse(preview_payload(preview))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def preview_clip(request: HttpRequest, code: uuid.UUID) -> HttpResponseBase:
    preview = library_selectors.preview_get_for_user(code=code, user=request.user)
    if preview.status != ProcessingStatus.READY:
        raise Http404("This preview is not ready")
    return private_file_response(request, storage_path=preview_clip_name(preview), content_type="video/mp4")


# --------------------------------------------------------------------------- list, new
@login_required
@require_GET
def analysis_list(request: HttpRequest) -> HttpResponse:
    """The history: every analysis the user can see, filtered by the URL's query, paginated."""
    history = history_filter(data=request.GET, user=request.user, request=request)
    page = Paginator(history.qs, HISTORY_PAGE_SIZE).get_page(_bounded_page(request.GET.get("page")))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "analyses/analysis/list.html",
        {
            "filter": history,
            "page": page,
            "rows": history_rows(page.object_list),
            "query": query.urlencode(),
            "filtered": history.active,
        },
    )


def _bounded_page(value: str | None) -> int:
    """A page number from the URL: 1 unless it is a positive number of at most 9 digits
    (Paginator then answers the last page for anything beyond it)."""
    value = (value or "").strip()
    return max(1, int(value)) if value.isdigit() and len(value) <= 9 else 1


def _initial_for_new(request: HttpRequest) -> dict[str, Any]:
    """Prefill from ?classifier=<code>&video=<code> (links from the library pages)."""
    initial: dict[str, Any] = {}
    classifier = video = None
    if request.GET.get("classifier"):
        try:
            classifier = library_selectors.classifier_get_for_user(
                code=request.GET["classifier"], user=request.user, include_archived=False
            )
            if not classifier.is_ready:
                raise Http404("Not inspected yet")
            initial["classifier"] = classifier.code
        except Http404:
            pass
    if request.GET.get("video"):
        try:
            video = library_selectors.video_get_for_user(
                code=request.GET["video"], user=request.user, include_archived=False
            )
            if not video.is_ready:
                raise Http404("Not converted yet")
            initial["video"] = video.code
        except Http404:
            pass
    if classifier is None:
        # With a single classifier in the library there is nothing to choose: preselect it.
        only = list(library_selectors.classifiers_usable_by(user=request.user)[:2])
        if len(only) == 1:
            classifier = only[0]
            initial["classifier"] = classifier.code
    if (
        classifier is not None
        and video is not None
        and video.expected_class is not None
        and 0 <= video.expected_class < classifier.num_classes
    ):
        initial["expected_class"] = str(video.expected_class)
    return initial


def _apply_service_error(form: AnalysisForm, error: AnalysisError) -> None:
    # The service names the offending input; show the sentence next to that field when the
    # form has one, at the top of the form otherwise.
    form.add_error(error.field if error.field in form.fields else None, error.message)


def _handle_preview(request: HttpRequest, *, form: AnalysisForm, fixed: Analysis | None) -> HttpResponse:
    """Queue a preview; the page polls it (JSON), or a browser without JS is sent to its page."""
    error = "Fix the highlighted fields to see the preview."
    if form.is_valid():
        try:
            preview = preview_create(
                user=request.user,
                classifier=fixed.classifier if fixed else form.cleaned_data["classifier"],
                video=fixed.video if fixed else form.cleaned_data["video"],
                preprocess=form.preprocess_params(),
            )
        except PreviewError as exc:
            error = exc.message
        else:
            if _wants_json(request):
                return JsonResponse({"ok": True, **preview_payload(preview)}, status=202)
            return redirect("analyses_run:preview", code=preview.code)
    if _wants_json(request):
        return JsonResponse({"ok": False, "error": error, "errors": form.errors.get_json_data()}, status=400)
    return _render_form(request, form=form, fixed=fixed, preview_error=error, status=400)


@login_required
@require_http_methods(["GET", "POST"])
def analysis_new(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _render_form(request, form=AnalysisForm(user=request.user, initial=_initial_for_new(request)))
    form = AnalysisForm(request.POST, user=request.user)
    if request.POST.get("action") == "preview":
        return _handle_preview(request, form=form, fixed=None)
    if not form.is_valid():
        return _render_form(request, form=form, status=400)
    try:
        analysis = analysis_create(
            user=request.user,
            classifier=form.cleaned_data["classifier"],
            video=form.cleaned_data["video"],
            expected_class=form.expected_class_value(),
            params=form.analysis_params(),
            team=form.cleaned_data.get("team"),
            title=form.cleaned_data.get("title") or "",
        )
    except AnalysisError as exc:
        _apply_service_error(form, exc)
        return _render_form(request, form=form, status=400)
    messages.success(request, "Analysis queued. This page follows its progress.")
    return redirect("analyses_run:detail", code=analysis.code)


# --------------------------------------------------------------------------- result page data
# The engine's stage timings, in the order they happen. Preprocessing and encoding the
# preprocessed clip run beside other stages, so the stages do not add up to the total.
# --------------------------------------------------------------------------- one analysis
@login_required
@require_GET
def analysis_detail(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user)
    visible = selectors.analyses_visible_to(user=request.user)
    context: dict[str, Any] = {
        "analysis": analysis,
        "status": status_payload(analysis),
        "can_write": can_write(user=request.user, obj=analysis),
        "parent": visible.filter(pk=analysis.parent_id).first() if analysis.parent_id else None,
        "reruns": list(visible.filter(parent=analysis).order_by("created_at")),
        **sharing_panel(user=request.user, target=analysis),
    }
    if analysis.status == AnalysisStatus.SUCCEEDED and analysis.manifest:
        context.update(result_context(analysis))
        context.update(provenance_context(analysis, verifications=verifications_recent(analysis=analysis)))
    analysis_record_read(user=request.user, analysis=analysis, action="analysis.viewed")
    return render(request, "analyses/analysis/detail.html", context)


@login_required
@require_GET
def analysis_status(request: HttpRequest, code: uuid.UUID) -> JsonResponse:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user)
    response = JsonResponse(status_payload(analysis))
    response["Cache-Control"] = "no-store"
    return response


def _listed_result_names(analysis: Analysis) -> list[str]:
    """The result files an analysis may serve (analyses.runs.archive.listed_result_names)."""
    return listed_result_names(analysis.manifest or {})


def _results_ready(analysis: Analysis) -> None:
    if analysis.status != AnalysisStatus.SUCCEEDED or not analysis.results_dir or not analysis.manifest:
        raise Http404("This analysis has no results")


@login_required
@require_GET
def analysis_file(request: HttpRequest, code: uuid.UUID, path: str) -> HttpResponseBase:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user)
    return result_file_response(request, analysis=analysis, path=path)


def result_file_response(
    request: HttpRequest, *, analysis: Analysis, path: str, via: str = ""
) -> HttpResponseBase:
    """One listed result file of an analysis the caller has already authorised (Range-aware);
    `via` names how they were (a share link's code), for the audit trail."""
    _results_ready(analysis)
    if clean_result_name(path) is None or path not in _listed_result_names(analysis):
        raise Http404("No such result file")
    media_type = result_media_type(path)
    download_name = None
    if request.GET.get("download") or media_type == "application/octet-stream":
        download_name = f"{analysis.code.hex[:8]}-{path.replace('/', '-')}"
        analysis_record_read(
            user=request.user, analysis=analysis, action="analysis.file_downloaded", file_name=path, via=via
        )
    return stored_result_response(
        request,
        results_dir=analysis.results_dir,
        name=path,
        content_type=media_type,
        download_name=download_name,
    )


@login_required
@require_GET
def analysis_zip(request: HttpRequest, code: uuid.UUID) -> HttpResponseBase:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user)
    return result_zip_response(request, analysis=analysis)


def result_zip_response(request: HttpRequest, *, analysis: Analysis, via: str = "") -> HttpResponseBase:
    """The ZIP of an analysis the caller has already authorised (the page's, the API's and a
    share link's). One machine (MEDIA_DELIVERY=django): streamed by Django. Otherwise large ZIPs
    must never go through Python: the one the worker prebuilt is handed to nginx or the object
    store, like any stored file."""
    _results_ready(analysis)
    name = f"analysis-{analysis.code.hex[:8]}.zip"
    names = _listed_result_names(analysis)
    prebuilt = archive_storage_name(analysis.results_dir)
    if storage.media_delivery_mode() != storage.DELIVERY_DJANGO and prebuilt_archive_exists(
        analysis.results_dir
    ):
        response = private_file_response(
            request, storage_path=prebuilt, content_type="application/zip", download_name=name
        )
    else:
        # MEDIA_DELIVERY=django; or an analysis published before the worker prebuilt ZIPs: then
        # (and only then) it is streamed from the store's objects (media_open), as it always was.
        response = _streamed_zip(results_dir=analysis.results_dir, names=names, download_name=name)
    analysis_record_read(
        user=request.user, analysis=analysis, action="analysis.zip_downloaded", file_name=name, via=via
    )
    return response


def _streamed_zip(*, results_dir: str, names: list[str], download_name: str) -> StreamingHttpResponse:
    """Every member is found (or 404) before the first byte is sent."""
    try:
        members = (
            stored_members(results_dir=results_dir, names=names)
            if storage.store_is_remote()
            else local_members(results_dir=results_dir, names=names, skip_unservable=False)
        )
    except storage.MediaMissing:
        raise Http404("A result file of this analysis is missing") from None
    response = StreamingHttpResponse(zip_stream(members), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    response["Cache-Control"] = "private, no-store"
    return response


# --------------------------------------------------------------------------- writes
@login_required
@require_http_methods(["GET", "POST"])
def analysis_rerun_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user, for_write=True)
    if request.method == "GET":
        return _render_form(
            request,
            form=AnalysisForm(
                user=request.user, fixed_analysis=analysis, initial=initial_from_analysis(analysis)
            ),
            fixed=analysis,
        )
    form = AnalysisForm(request.POST, user=request.user, fixed_analysis=analysis)
    if request.POST.get("action") == "preview":
        return _handle_preview(request, form=form, fixed=analysis)
    if not form.is_valid():
        return _render_form(request, form=form, fixed=analysis, status=400)
    try:
        new_analysis = analysis_rerun(
            user=request.user,
            analysis=analysis,
            params_changes=form.analysis_params(),
            expected_class=form.expected_class_value(),
            title=form.cleaned_data.get("title") or "",
        )
    except AnalysisError as exc:
        _apply_service_error(form, exc)
        return _render_form(request, form=form, fixed=analysis, status=400)
    messages.success(request, "Re-run queued with the changed parameters.")
    return redirect("analyses_run:detail", code=new_analysis.code)


@login_required
@require_POST
def analysis_cancel_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user, for_write=True)
    try:
        analysis = analysis_cancel(user=request.user, analysis=analysis)
    except AnalysisError as exc:
        if _wants_json(request):
            return JsonResponse({"ok": False, "error": exc.message}, status=409)
        messages.error(request, exc.message)
        return redirect("analyses_run:detail", code=analysis.code)
    if _wants_json(request):
        return JsonResponse({"ok": True, **status_payload(analysis)})
    messages.info(
        request,
        "Cancelled."
        if analysis.status == AnalysisStatus.CANCELLED
        else "Cancelling: the worker stops the engine within a few seconds.",
    )
    return redirect("analyses_run:detail", code=analysis.code)


@login_required
@require_POST
def analysis_delete_view(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    analysis = selectors.analysis_get_for_user(code=code, user=request.user, for_write=True)
    try:
        analysis_delete(user=request.user, analysis=analysis)
    except AnalysisError as exc:
        messages.error(request, exc.message)
        return redirect("analyses_run:detail", code=analysis.code)
    messages.success(request, "Analysis deleted with its result files.")
    return redirect("analyses_run:list")
