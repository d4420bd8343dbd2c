"""Library pages: classifiers and videos (list + upload, detail + edit, delete, private files).

Views only parse, call a service or selector, and render. Every object is looked up through
the selectors, so an outsider gets 404 and a read-only team member 403 on writes; file URLs
check the same permission as the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from analyses.access import can_write, holds_files
from analyses.files import private_file_response
from analyses.library import selectors
from analyses.library import services as library_services
from analyses.library.forms import (
    CLASS_MAP_MAX_BYTES,
    ClassifierEditForm,
    ClassifierUploadForm,
    VideoEditForm,
    VideoUploadForm,
)
from analyses.library.services import DuplicateUpload, LibraryError, class_map_text
from analyses.library.uploads import UploadLimitHandler, install_upload_limit
from analyses.quota import storage_use
from analyses.runs.filters import history_preview
from analyses.runs.presentation import history_rows
from analyses.sharing.presentation import sharing_panel
from gradcam_site.middleware import large_upload_view


def _show_upload_refusal(form: Any, limit: UploadLimitHandler) -> None:
    form.is_valid()
    field = limit.refusal_field if limit.refusal_field in form.fields else "file"
    form.errors.pop(field, None)
    form.add_error(field, limit.refusal)


def _team_choice(form: Any) -> Any:
    return form.cleaned_data.get("team")


def _upload_arguments(request: HttpRequest, form: Any) -> dict[str, Any]:
    """The `<entity>_create` arguments that every library upload form provides."""
    return {
        "owner": request.user,
        "team": _team_choice(form),
        "uploaded_file": form.cleaned_data["file"],
        "name": form.cleaned_data.get("name") or "",
        "description": form.cleaned_data.get("description") or "",
    }


def _edit_arguments(request: HttpRequest, form: Any) -> dict[str, Any]:
    """The `<entity>_update` arguments that every library edit form provides."""
    return {
        "actor": request.user,
        "name": form.cleaned_data["name"],
        "description": form.cleaned_data.get("description") or "",
        "team": _team_choice(form),
    }


def _edit_initial(obj: Any, **own_fields: Any) -> dict[str, Any]:
    return {"name": obj.name, "description": obj.description, "team": obj.team_id, **own_fields}


def _upload_response(
    request: HttpRequest,
    *,
    form: Any,
    limit: UploadLimitHandler | None,
    page: Callable[..., HttpResponse],
    create: Callable[[], Any],
    detail_route: str,
    success_message: str,
    error_fields: tuple[tuple[type[LibraryError], str], ...],
) -> HttpResponse:
    """The upload flow shared by models and videos: limits, validation, create, errors in words.

    `error_fields` maps service errors to the form field they belong to; a duplicate upload
    leads to the copy already stored, any other library error is shown at the file field.
    """
    if limit is not None and limit.refusal:
        _show_upload_refusal(form, limit)
        return page(request, form=form, status=400)
    if not form.is_valid():
        return page(request, form=form, status=400)
    try:
        created = create()
    except DuplicateUpload as duplicate:
        messages.info(request, f"{duplicate.message} Here it is.")
        return redirect(detail_route, code=duplicate.existing.code)
    except LibraryError as exc:
        fields_of_errors: tuple[tuple[type[LibraryError], str], ...] = (
            *error_fields,
            (library_services.InvalidTeam, "team"),
        )
        field = next(
            (name for error_type, name in fields_of_errors if isinstance(exc, error_type)),
            "file",
        )
        form.add_error(field, exc.message)
        return page(request, form=form, status=400)
    messages.success(request, success_message.format(name=created.name))
    return redirect(detail_route, code=created.code)


def _edit_response(
    request: HttpRequest,
    *,
    form: Any,
    page: Callable[[int], HttpResponse],
    update: Callable[[], Any],
    detail_route: str,
    code: Any,
    error_fields: tuple[tuple[type[LibraryError], str], ...],
) -> HttpResponse:
    """The detail-page flow shared by models and videos: show, or validate, update and come back.

    `page(status)` renders the detail page; it is called only after the update was tried, so
    it shows the form with its errors. `error_fields` maps service errors to the form field
    they belong to; any other library error is shown above the form.
    """
    if request.method != "POST":
        return page(200)
    if form.is_valid():
        try:
            update()
        except LibraryError as exc:
            field = next((name for error_type, name in error_fields if isinstance(exc, error_type)), None)
            form.add_error(field, exc.message)
        else:
            messages.success(request, "Changes saved.")
            return redirect(detail_route, code=code)
    return page(400)


def _delete_outcome_response(
    request: HttpRequest, *, outcome: str, name: str, kind: str, list_route: str
) -> HttpResponse:
    if outcome == "archived":
        messages.info(
            request,
            f"“{name}” is used by analyses, so it was archived instead of deleted: "
            "their results stay available.",
        )
    else:
        messages.success(request, f"{kind} “{name}” deleted.")
    return redirect(list_route)


def original_file_response(request: HttpRequest, obj: Any) -> HttpResponseBase:
    """The uploaded file itself, under the name it was uploaded with (each download audited)."""
    response = private_file_response(
        request,
        storage_path=obj.file.name,
        content_type="application/octet-stream",
        download_name=obj.original_filename,
    )
    library_services.library_file_downloaded(user=request.user, obj=obj)
    return response


# --------------------------------------------------------------------------- home
@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The analyses list is where work starts and comes back to (it links to both libraries)."""
    return redirect("analyses_run:list")


# --------------------------------------------------------------------------- classifiers
def _classifier_list_page(
    request: HttpRequest, *, form: ClassifierUploadForm, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "analyses/library/classifier_list.html",
        {
            "classifiers": selectors.classifiers_visible_to(user=request.user),
            "form": form,
            "max_model_mb": settings.GRADCAM_MAX_MODEL_BYTES // (1024 * 1024),
            "storage": storage_use(user=request.user),
        },
        status=status,
    )


@large_upload_view  # its own size limits replace the request-wide one
@csrf_exempt  # the upload handler must be installed before CSRF reads the body; see below
@login_required
@require_http_methods(["GET", "POST"])
def classifier_list(request: HttpRequest) -> HttpResponse:
    limit = None
    if request.method == "POST":
        limit = install_upload_limit(
            request,
            file_limits={"file": settings.GRADCAM_MAX_MODEL_BYTES, "class_map_file": CLASS_MAP_MAX_BYTES},
            kind="model",
        )
    return _classifier_list_protected(request, limit=limit)


@csrf_protect
def _classifier_list_protected(request: HttpRequest, *, limit: UploadLimitHandler | None) -> HttpResponse:
    if request.method != "POST":
        return _classifier_list_page(request, form=ClassifierUploadForm(user=request.user))
    form = ClassifierUploadForm(request.POST, request.FILES, user=request.user)
    return _upload_response(
        request,
        form=form,
        limit=limit,
        page=_classifier_list_page,
        create=lambda: library_services.classifier_create(
            **_upload_arguments(request, form),
            class_map_text=form.cleaned_data.get("class_map_text") or "",
        ),
        detail_route="library:classifier_detail",
        success_message="Model “{name}” uploaded. A worker is inspecting it now; this page updates when it is done.",
        error_fields=((library_services.InvalidClassMap, "class_map_text"),),
    )


_SCALING_LABELS = {
    "unit": "[0, 1] (pixel values divided by 255)",
    "symmetric": "[-1, 1]",
    "raw": "0–255 (raw pixel values)",
}


def _scaling_context(classifier: Any) -> dict[str, str]:
    scaling, reason = selectors.suggested_scaling(classifier=classifier)
    return {"scaling_label": _SCALING_LABELS.get(scaling, scaling), "scaling_reason": reason}


def _history(request: HttpRequest, *, preset: dict[str, str]) -> dict[str, Any]:
    """The newest analyses of this classifier or video, through the history's own filters."""
    preview = history_preview(user=request.user, preset=preset)
    return {**preview, "rows": history_rows(preview["analyses"])}


def _classifier_detail_page(
    request: HttpRequest, *, classifier: Any, form: ClassifierEditForm, status: int
) -> HttpResponse:
    classes = [
        {"index": index, "label": classifier.label_for(index), "named": bool(label)}
        for index, label in enumerate(
            (classifier.class_labels or [])
            + [""] * (classifier.num_classes - len(classifier.class_labels or []))
        )
    ]
    return render(
        request,
        "analyses/library/classifier_detail.html",
        {
            "classifier": classifier,
            "classes": classes,
            "form": form,
            "can_write": can_write(user=request.user, obj=classifier),
            "download_view": "library:classifier_download"
            if holds_files(user=request.user, obj=classifier)
            else "",
            **sharing_panel(user=request.user, target=classifier),
            "analysis_count": classifier.analyses.count(),
            "history": _history(request, preset={"classifier": str(classifier.code)}),
            **_scaling_context(classifier),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def classifier_detail(request: HttpRequest, code: str) -> HttpResponse:
    for_write = request.method == "POST"
    classifier = selectors.classifier_get_for_user(code=code, user=request.user, for_write=for_write)
    form = ClassifierEditForm(
        request.POST if for_write else None,
        user=request.user,
        current_team=classifier.team,
        initial=_edit_initial(classifier, class_map_text=class_map_text(labels=classifier.class_labels)),
    )
    return _edit_response(
        request,
        form=form,
        page=lambda status: _classifier_detail_page(request, classifier=classifier, form=form, status=status),
        update=lambda: library_services.classifier_update(
            classifier=classifier,
            **_edit_arguments(request, form),
            class_map_text=form.cleaned_data.get("class_map_text") or "",
        ),
        detail_route="library:classifier_detail",
        code=classifier.code,
        error_fields=((library_services.InvalidClassMap, "class_map_text"),),
    )


@login_required
@require_POST
def classifier_delete(request: HttpRequest, code: str) -> HttpResponse:
    classifier = selectors.classifier_get_for_user(code=code, user=request.user, for_write=True)
    outcome = library_services.classifier_delete(classifier=classifier, actor=request.user)
    return _delete_outcome_response(
        request, outcome=outcome, name=classifier.name, kind="Model", list_route="library:classifier_list"
    )


@login_required
@require_GET
def classifier_download(request: HttpRequest, code: str) -> HttpResponseBase:
    classifier = selectors.classifier_get_for_user(code=code, user=request.user)
    if not holds_files(user=request.user, obj=classifier):
        # Shared read-only: the model can be used here, but its file stays with its owner/team.
        raise Http404("No such model file")
    return original_file_response(request, classifier)


# --------------------------------------------------------------------------- videos
def _video_list_page(request: HttpRequest, *, form: VideoUploadForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "analyses/library/video_list.html",
        {
            "videos": selectors.videos_visible_to(user=request.user),
            "form": form,
            "max_video_mb": settings.GRADCAM_MAX_VIDEO_BYTES // (1024 * 1024),
            "max_video_seconds": settings.GRADCAM_MAX_VIDEO_SECONDS,
            "storage": storage_use(user=request.user),
        },
        status=status,
    )


@large_upload_view  # its own size limits replace the request-wide one
@csrf_exempt  # the upload handler must be installed before CSRF reads the body
@login_required
@require_http_methods(["GET", "POST"])
def video_list(request: HttpRequest) -> HttpResponse:
    limit = None
    if request.method == "POST":
        limit = install_upload_limit(
            request, file_limits={"file": settings.GRADCAM_MAX_VIDEO_BYTES}, kind="video"
        )
    return _video_list_protected(request, limit=limit)


@csrf_protect
def _video_list_protected(request: HttpRequest, *, limit: UploadLimitHandler | None) -> HttpResponse:
    if request.method != "POST":
        return _video_list_page(request, form=VideoUploadForm(user=request.user))
    form = VideoUploadForm(request.POST, request.FILES, user=request.user)
    return _upload_response(
        request,
        form=form,
        limit=limit,
        page=_video_list_page,
        create=lambda: library_services.video_create(
            **_upload_arguments(request, form),
            expected_class=form.cleaned_data.get("expected_class"),
        ),
        detail_route="library:video_detail",
        success_message="Video “{name}” uploaded. A worker is reading it and making a browser copy; this page updates when it is done.",
        error_fields=(),
    )


def _video_detail_page(request: HttpRequest, *, video: Any, form: VideoEditForm, status: int) -> HttpResponse:
    return render(
        request,
        "analyses/library/video_detail.html",
        {
            "video": video,
            "form": form,
            "download_view": "library:video_original"
            if holds_files(user=request.user, obj=video)
            and (video.archived_at is None or video.owner_id == request.user.pk)
            else "",
            **sharing_panel(user=request.user, target=video),
            "can_write": can_write(user=request.user, obj=video),
            "analysis_count": video.analyses.count(),
            "history": _history(request, preset={"video": str(video.code)}),
            "megapixels": round(video.width * video.height / 1e6, 2),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def video_detail(request: HttpRequest, code: str) -> HttpResponse:
    for_write = request.method == "POST"
    video = selectors.video_get_for_user(code=code, user=request.user, for_write=for_write)
    form = VideoEditForm(
        request.POST if for_write else None,
        user=request.user,
        current_team=video.team,
        initial=_edit_initial(video, expected_class=video.expected_class),
    )
    return _edit_response(
        request,
        form=form,
        page=lambda status: _video_detail_page(request, video=video, form=form, status=status),
        update=lambda: library_services.video_update(
            video=video,
            **_edit_arguments(request, form),
            expected_class=form.cleaned_data.get("expected_class"),
        ),
        detail_route="library:video_detail",
        code=video.code,
        error_fields=(),
    )


@login_required
@require_POST
def video_delete(request: HttpRequest, code: str) -> HttpResponse:
    video = selectors.video_get_for_user(code=code, user=request.user, for_write=True)
    outcome = library_services.video_delete(video=video, actor=request.user)
    return _delete_outcome_response(
        request, outcome=outcome, name=video.name, kind="Video", list_route="library:video_list"
    )


@login_required
@require_GET
def video_original(request: HttpRequest, code: str) -> HttpResponseBase:
    video = selectors.video_get_for_user(code=code, user=request.user)
    if not holds_files(user=request.user, obj=video):
        raise Http404("No such video")  # shared read-only: the original stays with its owner/team
    if video.archived_at is not None and video.owner_id != request.user.pk:
        # Deleted by its owner but kept for the analyses that use it: those show their own
        # frames; the original file itself is its owner's alone from now on.
        raise Http404("No such video")
    return original_file_response(request, video)


def _processing_status(obj: Any, *, detail_route: str) -> JsonResponse:
    response = JsonResponse(
        {
            "code": str(obj.code),
            "status": obj.status,
            "status_label": obj.get_status_display(),
            "message": obj.status_message,
            "url": reverse(detail_route, kwargs={"code": obj.code}),
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def classifier_status(request: HttpRequest, code: str) -> JsonResponse:
    classifier = selectors.classifier_get_for_user(code=code, user=request.user)
    return _processing_status(classifier, detail_route="library:classifier_detail")


@login_required
@require_GET
def video_status(request: HttpRequest, code: str) -> JsonResponse:
    video = selectors.video_get_for_user(code=code, user=request.user)
    return _processing_status(video, detail_route="library:video_detail")


@login_required
@require_GET
def video_rendition(request: HttpRequest, code: str) -> HttpResponseBase:
    video = selectors.video_get_for_user(code=code, user=request.user)
    return private_file_response(request, storage_path=video.rendition.name, content_type="video/mp4")


@login_required
@require_GET
def video_poster(request: HttpRequest, code: str) -> HttpResponseBase:
    video = selectors.video_get_for_user(code=code, user=request.user)
    return private_file_response(request, storage_path=video.poster.name, content_type="image/jpeg")
