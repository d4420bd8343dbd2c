"""Library pages: classifiers and videos (list + upload, detail + edit, delete, private files).

Views only parse, call a service or selector, and render. Every object is looked up through
the selectors, so an outsider gets 404 and a read-only team member 403 on writes; file URLs
check the same permission as the page.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from analyses import selectors
from analyses.files import private_file_response
from analyses.forms import ClassifierEditForm, ClassifierUploadForm, VideoEditForm, VideoUploadForm
from analyses.services import library as library_services
from analyses.services.library import DuplicateUpload, LibraryError, class_map_text

RECENT_ON_HOME = 5


# --------------------------------------------------------------------------- upload size
class UploadLimitHandler(FileUploadHandler):
    """Stops receiving the `file` field once it passes the limit and remembers why.

    Without it Django would write the whole oversized upload to disk before any view code runs.
    The rest of the request body is still read (and discarded), so the browser gets a normal
    page with the message instead of a reset connection.
    """

    def __init__(self, request: HttpRequest | None = None, *, max_bytes: int, kind: str) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.kind = kind
        self.received = 0
        self.refusal: str | None = None
        self._watching = False

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        self._watching = field_name == "file"
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self._watching:
            self.received += len(raw_data)
            if self.received > self.max_bytes:
                limit_mb = self.max_bytes / (1024 * 1024)
                self.refusal = f"The {self.kind} file is larger than the limit of {limit_mb:.1f} MB."
                raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _install_upload_limit(request: HttpRequest, *, max_bytes: int, kind: str) -> UploadLimitHandler:
    handler = UploadLimitHandler(request, max_bytes=max_bytes, kind=kind)
    request.upload_handlers.insert(0, handler)
    return handler


def _team_choice(form: Any) -> Any:
    return form.cleaned_data.get("team")


# --------------------------------------------------------------------------- home
@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    try:
        resolve("/analyses/")
    except Resolver404:
        pass
    else:
        return redirect("/analyses/")
    classifiers = selectors.classifiers_visible_to(user=request.user)
    videos = selectors.videos_visible_to(user=request.user)
    return render(
        request,
        "analyses/library/home.html",
        {
            "classifier_count": classifiers.count(),
            "video_count": videos.count(),
            "recent_classifiers": classifiers[:RECENT_ON_HOME],
            "recent_videos": videos[:RECENT_ON_HOME],
            "teams": selectors.teams_of(user=request.user),
        },
    )


# --------------------------------------------------------------------------- classifiers
def _classifier_list_page(request: HttpRequest, *, form: ClassifierUploadForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "analyses/library/classifier_list.html",
        {
            "classifiers": selectors.classifiers_visible_to(user=request.user),
            "form": form,
            "max_model_mb": settings.GRADCAM_MAX_MODEL_BYTES // (1024 * 1024),
        },
        status=status,
    )


@csrf_exempt  # the upload handler must be installed before CSRF reads the body; see below
@login_required
@require_http_methods(["GET", "POST"])
def classifier_list(request: HttpRequest) -> HttpResponse:
    limit = None
    if request.method == "POST":
        limit = _install_upload_limit(
            request, max_bytes=settings.GRADCAM_MAX_MODEL_BYTES, kind="model"
        )
    return _classifier_list_protected(request, limit=limit)


@csrf_protect
def _classifier_list_protected(request: HttpRequest, *, limit: UploadLimitHandler | None) -> HttpResponse:
    if request.method != "POST":
        return _classifier_list_page(request, form=ClassifierUploadForm(user=request.user))
    form = ClassifierUploadForm(request.POST, request.FILES, user=request.user)
    if limit is not None and limit.refusal:
        form.is_valid()
        form.errors.pop("file", None)
        form.add_error("file", limit.refusal)
        return _classifier_list_page(request, form=form, status=400)
    if not form.is_valid():
        return _classifier_list_page(request, form=form, status=400)
    try:
        classifier = library_services.classifier_create(
            owner=request.user,
            team=_team_choice(form),
            uploaded_file=form.cleaned_data["file"],
            name=form.cleaned_data.get("name") or "",
            description=form.cleaned_data.get("description") or "",
            class_map_text=form.cleaned_data.get("class_map_text") or "",
        )
    except DuplicateUpload as duplicate:
        messages.info(request, f"{duplicate.message} Here it is.")
        return redirect("library:classifier_detail", code=duplicate.existing.code)
    except library_services.InvalidClassMap as exc:
        form.add_error("class_map_text", exc.message)
        return _classifier_list_page(request, form=form, status=400)
    except library_services.InvalidTeam as exc:
        form.add_error("team", exc.message)
        return _classifier_list_page(request, form=form, status=400)
    except LibraryError as exc:
        form.add_error("file", exc.message)
        return _classifier_list_page(request, form=form, status=400)
    messages.success(request, f"Model “{classifier.name}” uploaded and inspected.")
    return redirect("library:classifier_detail", code=classifier.code)


def _classifier_edit_form(classifier: Any, *, user: Any, data: Any = None) -> ClassifierEditForm:
    return ClassifierEditForm(
        data,
        user=user,
        initial={
            "name": classifier.name,
            "description": classifier.description,
            "team": classifier.team_id,
            "class_map_text": class_map_text(labels=classifier.class_labels),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def classifier_detail(request: HttpRequest, code: str) -> HttpResponse:
    for_write = request.method == "POST"
    classifier = selectors.classifier_get_for_user(code=code, user=request.user, for_write=for_write)
    form = _classifier_edit_form(classifier, user=request.user, data=request.POST if for_write else None)
    status = 200
    if for_write:
        if form.is_valid():
            try:
                library_services.classifier_update(
                    classifier=classifier,
                    actor=request.user,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data.get("description") or "",
                    class_map_text=form.cleaned_data.get("class_map_text") or "",
                    team=_team_choice(form),
                )
            except library_services.InvalidClassMap as exc:
                form.add_error("class_map_text", exc.message)
            except LibraryError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Changes saved.")
                return redirect("library:classifier_detail", code=classifier.code)
        status = 400
    classes = [
        {"index": index, "label": classifier.label_for(index), "named": bool(label)}
        for index, label in enumerate(
            (classifier.class_labels or []) + [""] * (classifier.num_classes - len(classifier.class_labels or []))
        )
    ]
    return render(
        request,
        "analyses/library/classifier_detail.html",
        {
            "classifier": classifier,
            "classes": classes,
            "form": form,
            "can_write": selectors.can_write(user=request.user, obj=classifier),
            "analysis_count": classifier.analyses.count(),
        },
        status=status,
    )


@login_required
@require_POST
def classifier_delete(request: HttpRequest, code: str) -> HttpResponse:
    classifier = selectors.classifier_get_for_user(code=code, user=request.user, for_write=True)
    outcome = library_services.classifier_delete(classifier=classifier, actor=request.user)
    if outcome == "archived":
        messages.info(
            request,
            f"“{classifier.name}” is used by analyses, so it was archived instead of deleted: "
            "their results stay available.",
        )
    else:
        messages.success(request, f"Model “{classifier.name}” deleted.")
    return redirect("library:classifier_list")


@login_required
@require_GET
def classifier_download(request: HttpRequest, code: str) -> HttpResponse:
    classifier = selectors.classifier_get_for_user(code=code, user=request.user)
    return private_file_response(
        request,
        storage_path=classifier.file.name,
        content_type="application/octet-stream",
        download_name=classifier.original_filename,
    )


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
        },
        status=status,
    )


@csrf_exempt  # the upload handler must be installed before CSRF reads the body
@login_required
@require_http_methods(["GET", "POST"])
def video_list(request: HttpRequest) -> HttpResponse:
    limit = None
    if request.method == "POST":
        limit = _install_upload_limit(
            request, max_bytes=settings.GRADCAM_MAX_VIDEO_BYTES, kind="video"
        )
    return _video_list_protected(request, limit=limit)


@csrf_protect
def _video_list_protected(request: HttpRequest, *, limit: UploadLimitHandler | None) -> HttpResponse:
    if request.method != "POST":
        return _video_list_page(request, form=VideoUploadForm(user=request.user))
    form = VideoUploadForm(request.POST, request.FILES, user=request.user)
    if limit is not None and limit.refusal:
        form.is_valid()
        form.errors.pop("file", None)
        form.add_error("file", limit.refusal)
        return _video_list_page(request, form=form, status=400)
    if not form.is_valid():
        return _video_list_page(request, form=form, status=400)
    try:
        video = library_services.video_create(
            owner=request.user,
            team=_team_choice(form),
            uploaded_file=form.cleaned_data["file"],
            name=form.cleaned_data.get("name") or "",
            description=form.cleaned_data.get("description") or "",
            expected_class=form.cleaned_data.get("expected_class"),
        )
    except DuplicateUpload as duplicate:
        messages.info(request, f"{duplicate.message} Here it is.")
        return redirect("library:video_detail", code=duplicate.existing.code)
    except library_services.InvalidTeam as exc:
        form.add_error("team", exc.message)
        return _video_list_page(request, form=form, status=400)
    except LibraryError as exc:
        form.add_error("file", exc.message)
        return _video_list_page(request, form=form, status=400)
    messages.success(request, f"Video “{video.name}” uploaded.")
    return redirect("library:video_detail", code=video.code)


@login_required
@require_http_methods(["GET", "POST"])
def video_detail(request: HttpRequest, code: str) -> HttpResponse:
    for_write = request.method == "POST"
    video = selectors.video_get_for_user(code=code, user=request.user, for_write=for_write)
    form = VideoEditForm(
        request.POST if for_write else None,
        user=request.user,
        initial={
            "name": video.name,
            "description": video.description,
            "team": video.team_id,
            "expected_class": video.expected_class,
        },
    )
    status = 200
    if for_write:
        if form.is_valid():
            try:
                library_services.video_update(
                    video=video,
                    actor=request.user,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data.get("description") or "",
                    expected_class=form.cleaned_data.get("expected_class"),
                    team=_team_choice(form),
                )
            except LibraryError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Changes saved.")
                return redirect("library:video_detail", code=video.code)
        status = 400
    return render(
        request,
        "analyses/library/video_detail.html",
        {
            "video": video,
            "form": form,
            "can_write": selectors.can_write(user=request.user, obj=video),
            "analysis_count": video.analyses.count(),
            "megapixels": round(video.width * video.height / 1e6, 2),
        },
        status=status,
    )


@login_required
@require_POST
def video_delete(request: HttpRequest, code: str) -> HttpResponse:
    video = selectors.video_get_for_user(code=code, user=request.user, for_write=True)
    outcome = library_services.video_delete(video=video, actor=request.user)
    if outcome == "archived":
        messages.info(
            request,
            f"“{video.name}” is used by analyses, so it was archived instead of deleted: "
            "their results stay available.",
        )
    else:
        messages.success(request, f"Video “{video.name}” deleted.")
    return redirect("library:video_list")


@login_required
@require_GET
def video_original(request: HttpRequest, code: str) -> HttpResponse:
    video = selectors.video_get_for_user(code=code, user=request.user)
    return private_file_response(
        request,
        storage_path=video.file.name,
        content_type="application/octet-stream",
        download_name=video.original_filename,
    )


@login_required
@require_GET
def video_rendition(request: HttpRequest, code: str) -> HttpResponse:
    video = selectors.video_get_for_user(code=code, user=request.user)
    return private_file_response(request, storage_path=video.rendition.name, content_type="video/mp4")


@login_required
@require_GET
def video_poster(request: HttpRequest, code: str) -> HttpResponse:
    video = selectors.video_get_for_user(code=code, user=request.user)
    return private_file_response(request, storage_path=video.poster.name, content_type="image/jpeg")

