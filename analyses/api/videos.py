"""API: videos — upload, list, detail with the probe data and processing status, edit, delete,
and the original file, browser copy (rendition) and poster — through the library's forms,
services and selectors, as the video pages.

An upload is validated by the same form as the page (same limits, same refusals, same words),
with the same streaming size limit; a worker then probes it and makes its browser copy, so the
answer is 202 with `status: "processing"`: poll the detail until it is `ready` (or `failed`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analyses.access import can_write, holds_files
from analyses.api.common import (
    TeamRefSerializer,
    UserRefSerializer,
    form_errors,
    team_from_code,
    team_ref,
    user_ref,
)
from analyses.api.files import FileNegotiation, binary_responses
from analyses.api.library import STATUS_PARAMETER
from analyses.api.uploads import UploadLimitMixin
from analyses.files import private_file_response
from analyses.library import selectors
from analyses.library import services as library_services
from analyses.library.forms import VideoEditForm, VideoUploadForm
from analyses.library.models import Video
from analyses.library.services import InvalidTeam, LibraryError, UploadRefused
from analyses.library.views import original_file_response
from gradcam_site.api import api_error, error_responses, message_serializer
from gradcam_site.middleware import large_upload_view


class VideoSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    owner = UserRefSerializer()
    team = TeamRefSerializer(allow_null=True)
    status = serializers.ChoiceField(choices=["processing", "ready", "failed"])
    status_message = serializers.CharField(help_text="Why it was refused, or what the worker is doing")
    created_at = serializers.DateTimeField()
    archived = serializers.BooleanField(
        help_text="Deleted by its owner but kept for the analyses that use it"
    )
    original_filename = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    container = serializers.CharField(help_text="As FFmpeg names it; empty until probed")
    codec = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    fps = serializers.FloatField()
    duration_seconds = serializers.FloatField()
    frame_count = serializers.IntegerField()
    has_audio = serializers.BooleanField(help_text="Informational: analyses never use the sound")
    expected_class = serializers.IntegerField(
        allow_null=True, help_text="The class this clip shows (the default expected class of analyses)"
    )
    can_write = serializers.BooleanField(help_text="Whether you may edit or delete it")
    original_url = serializers.CharField(
        allow_null=True, help_text="Download of the uploaded file, if you may (owner and team)"
    )
    rendition_url = serializers.CharField(
        allow_null=True, help_text="The browser-playable H.264 copy (Range supported), once ready"
    )
    poster_url = serializers.CharField(allow_null=True, help_text="A JPEG still of the clip, once ready")


def _may_take_original(*, user: Any, video: Video) -> bool:
    """The original file is its owner's and team's (a share never gives it); once archived,
    its owner's alone (as on the video page)."""
    return holds_files(user=user, obj=video) and (video.archived_at is None or video.owner_id == user.pk)


def video_data(video: Video, *, request: Request) -> dict[str, Any]:
    user = request.user
    base = f"/api/v1/videos/{video.code}/"
    return {
        "code": video.code,
        "name": video.name,
        "description": video.description,
        "owner": user_ref(video.owner),
        "team": team_ref(video.team),
        "status": video.status,
        "status_message": video.status_message,
        "created_at": video.created_at,
        "archived": video.archived_at is not None,
        "original_filename": video.original_filename,
        "size_bytes": video.size_bytes,
        "sha256": video.sha256,
        "container": video.container,
        "codec": video.codec,
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "duration_seconds": video.duration_seconds,
        "frame_count": video.frame_count,
        "has_audio": bool((video.probe or {}).get("has_audio")),
        "expected_class": video.expected_class,
        "can_write": can_write(user=user, obj=video),
        "original_url": request.build_absolute_uri(base + "original/")
        if _may_take_original(user=user, video=video)
        else None,
        "rendition_url": request.build_absolute_uri(base + "rendition.mp4") if video.rendition else None,
        "poster_url": request.build_absolute_uri(base + "poster.jpg") if video.poster else None,
    }


class VideoUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The video (MP4, AVI, MKV, MOV, WebM...)")
    name = serializers.CharField(required=False, max_length=200, help_text="Defaults to the file name")
    description = serializers.CharField(required=False, allow_blank=True)
    team = serializers.UUIDField(required=False, allow_null=True, help_text="Code of one of your teams")
    expected_class = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="The class index this clip shows"
    )


class VideoEditSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    team = serializers.UUIDField(required=False, allow_null=True)
    expected_class = serializers.IntegerField(required=False, allow_null=True, min_value=0)


def _library_refusal(exc: LibraryError) -> Response:
    """A video service's refusal at the field it is about. The only plain LibraryError the video
    services raise is the expected class's bounds check."""
    if isinstance(exc, InvalidTeam):
        field = "team"
    elif isinstance(exc, UploadRefused):
        field = "file"
    else:
        field = "expected_class"
    return api_error(exc.message, status=400, code="invalid", fields={field: [exc.message]})


class VideoList(UploadLimitMixin, GenericAPIView):
    parser_classes = [MultiPartParser, FormParser]
    queryset = Video.objects.none()  # for the schema's model name; reads use the selector
    upload_kind = "video"

    def upload_limits(self) -> dict[str, int]:
        return {"file": settings.GRADCAM_MAX_VIDEO_BYTES}

    @extend_schema(
        operation_id="videos_list",
        parameters=[STATUS_PARAMETER],
        responses={200: VideoSerializer(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        return self.uploads_page(
            request, queryset=selectors.videos_visible_to(user=request.user), data_of=video_data
        )

    @extend_schema(
        operation_id="videos_create",
        request={"multipart/form-data": VideoUploadSerializer},
        responses={202: VideoSerializer, **error_responses(400, 401, 409, 413, 429)},
        description="Upload a video. A worker probes it and makes its browser copy: poll its detail "
        "until `status` is `ready` (or `failed`, with `status_message` saying why).",
    )
    def post(self, request: Request) -> Response:
        return self.upload_response(
            request,
            form_class=VideoUploadForm,
            create=lambda cleaned: library_services.video_create(
                owner=request.user,
                team=cleaned.get("team"),
                uploaded_file=cleaned["file"],
                name=cleaned.get("name") or "",
                description=cleaned.get("description") or "",
                expected_class=cleaned.get("expected_class"),
            ),
            refusal=_library_refusal,
            data_of=video_data,
        )


class VideoDetail(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        operation_id="videos_retrieve",
        responses={200: VideoSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, code: str) -> Response:
        video = selectors.video_get_for_user(code=code, user=request.user)
        return Response(video_data(video, request=request))

    @extend_schema(
        operation_id="videos_partial_update",
        request=VideoEditSerializer,
        responses={200: VideoSerializer, **error_responses(400, 401, 403, 404)},
    )
    def patch(self, request: Request, code: str) -> Response:
        video = selectors.video_get_for_user(code=code, user=request.user, for_write=True)
        edits = VideoEditSerializer(data=request.data)
        edits.is_valid(raise_exception=True)
        values = edits.validated_data
        team = team_from_code(code=values.get("team"), user=request.user) if "team" in values else video.team
        expected = values.get("expected_class", video.expected_class)
        form = VideoEditForm(
            {
                "name": values.get("name", video.name),
                "description": values.get("description", video.description),
                "team": team.pk if team else "",
                "expected_class": "" if expected is None else expected,
            },
            user=request.user,
            current_team=video.team,
        )
        if not form.is_valid():
            raise form_errors(form)
        try:
            library_services.video_update(
                video=video,
                actor=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data.get("description") or "",
                expected_class=form.cleaned_data.get("expected_class"),
                team=form.cleaned_data.get("team"),
            )
        except LibraryError as exc:
            return _library_refusal(exc)
        video.refresh_from_db()
        return Response(video_data(video, request=request))

    @extend_schema(
        operation_id="videos_destroy",
        responses={200: message_serializer("VideoDeletedMessage"), **error_responses(401, 403, 404)},
        description="Deletes the video, or archives it when analyses use it (their results stay valid).",
    )
    def delete(self, request: Request, code: str) -> Response:
        video = selectors.video_get_for_user(code=code, user=request.user, for_write=True)
        outcome = library_services.video_delete(video=video, actor=request.user)
        words = (
            "Deleted."
            if outcome == "deleted"
            else "Archived: analyses use this video, so its file is kept for their results."
        )
        return Response({"message": words, "outcome": outcome})


class VideoOriginal(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="videos_original",
        responses=binary_responses("application/octet-stream", "The uploaded video file"),
        description="The uploaded file itself (owner and team members only: a share never gives it). "
        "Supports Range.",
    )
    def get(self, request: Request, code: str) -> HttpResponseBase:
        video = selectors.video_get_for_user(code=code, user=request.user)
        if not _may_take_original(user=request.user, video=video):
            raise Http404("No such video")
        return original_file_response(request._request, video)


class VideoRendition(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="videos_rendition",
        responses=binary_responses("video/mp4", "The browser-playable H.264 copy"),
        description="The browser copy every viewer of the video may play. Supports Range.",
    )
    def get(self, request: Request, code: str) -> HttpResponseBase:
        video = selectors.video_get_for_user(code=code, user=request.user)
        return private_file_response(
            request._request, storage_path=video.rendition.name, content_type="video/mp4"
        )


class VideoPoster(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="videos_poster",
        responses=binary_responses("image/jpeg", "A still of the clip"),
    )
    def get(self, request: Request, code: str) -> HttpResponseBase:
        video = selectors.video_get_for_user(code=code, user=request.user)
        return private_file_response(
            request._request, storage_path=video.poster.name, content_type="image/jpeg"
        )


video_list_view = large_upload_view(VideoList.as_view())
video_detail_view = VideoDetail.as_view()
video_original_view = VideoOriginal.as_view()
video_rendition_view = VideoRendition.as_view()
video_poster_view = VideoPoster.as_view()
