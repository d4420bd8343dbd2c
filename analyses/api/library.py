"""API: classifiers (models) — upload, list, detail with the inspection result and class labels,
edit, delete, download — through the library's forms, services and selectors.

An upload is validated by the same form as the page (same limits, same refusals, same words),
with the same streaming size limit installed before the multipart body is parsed; the file is
then inspected by a worker, so the answer is 202 with `status: "processing"`: poll the detail.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
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
from analyses.api.uploads import UploadLimitMixin
from analyses.library import selectors
from analyses.library import services as library_services
from analyses.library.forms import CLASS_MAP_MAX_BYTES, ClassifierEditForm, ClassifierUploadForm
from analyses.library.models import Classifier
from analyses.library.services import LibraryError, class_map_text
from analyses.library.views import original_file_response
from gradcam_site.api import api_error, error_responses, message_serializer
from gradcam_site.middleware import large_upload_view

STATUS_PARAMETER = OpenApiParameter(
    "status", str, enum=["processing", "ready", "failed"], description="Only uploads in this state"
)


class ClassifierSerializer(serializers.Serializer):
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
    file_format = serializers.CharField(help_text="h5 or keras")
    original_filename = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    input_shape = serializers.ListField(child=serializers.IntegerField(), help_text="[T, H, W, C]")
    num_classes = serializers.IntegerField()
    conv3d_layers = serializers.ListField(child=serializers.CharField())
    class_labels = serializers.ListField(child=serializers.CharField(allow_blank=True))
    inspection = serializers.DictField(help_text="What inspection read from the model's config")
    can_write = serializers.BooleanField(help_text="Whether you may edit or delete it")
    file_url = serializers.CharField(allow_null=True, help_text="Download of the model file, if you may")


def classifier_data(classifier: Classifier, *, request: Request) -> dict[str, Any]:
    user = request.user
    return {
        "code": classifier.code,
        "name": classifier.name,
        "description": classifier.description,
        "owner": user_ref(classifier.owner),
        "team": team_ref(classifier.team),
        "status": classifier.status,
        "status_message": classifier.status_message,
        "created_at": classifier.created_at,
        "archived": classifier.archived_at is not None,
        "file_format": classifier.file_format,
        "original_filename": classifier.original_filename,
        "size_bytes": classifier.size_bytes,
        "sha256": classifier.sha256,
        "input_shape": list(classifier.input_shape or []),
        "num_classes": classifier.num_classes,
        "conv3d_layers": list(classifier.conv3d_layers or []),
        "class_labels": [str(label) for label in classifier.class_labels or []],
        "inspection": classifier.inspection or {},
        "can_write": can_write(user=user, obj=classifier),
        "file_url": request.build_absolute_uri(f"/api/v1/classifiers/{classifier.code}/file/")
        if holds_files(user=user, obj=classifier)
        else None,
    }


class ClassifierUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The .h5 or .keras file")
    name = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="Defaults to the file name"
    )
    description = serializers.CharField(required=False, allow_blank=True)
    team = serializers.UUIDField(required=False, allow_null=True, help_text="Code of one of your teams")
    class_map_text = serializers.CharField(required=False, allow_blank=True, help_text="`index: label` lines")
    class_map_file = serializers.FileField(required=False, help_text="The class map as a UTF-8 text file")


class ClassifierEditSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    team = serializers.UUIDField(required=False, allow_null=True)
    class_map_text = serializers.CharField(required=False, allow_blank=True)


class ClassifierList(UploadLimitMixin, GenericAPIView):
    parser_classes = [MultiPartParser, FormParser]
    queryset = Classifier.objects.none()  # for the schema's model name; reads use the selector
    upload_kind = "model"

    def upload_limits(self) -> dict[str, int]:
        return {"file": settings.GRADCAM_MAX_MODEL_BYTES, "class_map_file": CLASS_MAP_MAX_BYTES}

    @extend_schema(
        operation_id="classifiers_list",
        parameters=[STATUS_PARAMETER],
        responses={200: ClassifierSerializer(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        return self.uploads_page(
            request, queryset=selectors.classifiers_visible_to(user=request.user), data_of=classifier_data
        )

    @extend_schema(
        operation_id="classifiers_create",
        request={"multipart/form-data": ClassifierUploadSerializer},
        responses={202: ClassifierSerializer, **error_responses(400, 401, 409, 413, 429)},
        description="Upload a model. It is inspected by a worker: poll its detail until `status` is "
        "`ready` (or `failed`, with `status_message` saying why).",
    )
    def post(self, request: Request) -> Response:
        return self.upload_response(
            request,
            form_class=ClassifierUploadForm,
            create=lambda cleaned: library_services.classifier_create(
                owner=request.user,
                team=cleaned.get("team"),
                uploaded_file=cleaned["file"],
                name=cleaned.get("name") or "",
                description=cleaned.get("description") or "",
                class_map_text=cleaned.get("class_map_text") or "",
            ),
            refusal=_classifier_refusal,
            data_of=classifier_data,
        )


def _classifier_refusal(exc: LibraryError) -> Response:
    field = "class_map_text" if isinstance(exc, library_services.InvalidClassMap) else "file"
    return api_error(exc.message, status=400, code="invalid", fields={field: [exc.message]})


class ClassifierDetail(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        operation_id="classifiers_retrieve",
        responses={200: ClassifierSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, code: str) -> Response:
        classifier = selectors.classifier_get_for_user(code=code, user=request.user)
        return Response(classifier_data(classifier, request=request))

    @extend_schema(
        operation_id="classifiers_partial_update",
        request=ClassifierEditSerializer,
        responses={200: ClassifierSerializer, **error_responses(400, 401, 403, 404)},
    )
    def patch(self, request: Request, code: str) -> Response:
        classifier = selectors.classifier_get_for_user(code=code, user=request.user, for_write=True)
        edits = ClassifierEditSerializer(data=request.data)
        edits.is_valid(raise_exception=True)
        values = edits.validated_data
        team = (
            team_from_code(code=values.get("team"), user=request.user)
            if "team" in values
            else classifier.team
        )
        form = ClassifierEditForm(
            {
                "name": values.get("name", classifier.name),
                "description": values.get("description", classifier.description),
                "team": team.pk if team else "",
                "class_map_text": values.get(
                    "class_map_text", class_map_text(labels=classifier.class_labels)
                ),
            },
            user=request.user,
            current_team=classifier.team,
        )
        if not form.is_valid():
            raise form_errors(form)
        try:
            library_services.classifier_update(
                classifier=classifier,
                actor=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data.get("description") or "",
                team=form.cleaned_data.get("team"),
                class_map_text=form.cleaned_data.get("class_map_text") or "",
            )
        except library_services.InvalidClassMap as exc:
            return api_error(
                exc.message, status=400, code="invalid", fields={"class_map_text": [exc.message]}
            )
        except LibraryError as exc:
            return api_error(exc.message, status=400, code="invalid", fields={"team": [exc.message]})
        classifier.refresh_from_db()
        return Response(classifier_data(classifier, request=request))

    @extend_schema(
        operation_id="classifiers_destroy",
        responses={200: message_serializer("DeletedMessage"), **error_responses(401, 403, 404)},
        description="Deletes the model, or archives it when analyses use it (their results stay valid).",
    )
    def delete(self, request: Request, code: str) -> Response:
        classifier = selectors.classifier_get_for_user(code=code, user=request.user, for_write=True)
        outcome = library_services.classifier_delete(classifier=classifier, actor=request.user)
        words = (
            "Deleted."
            if outcome == "deleted"
            else "Archived: analyses use this model, so its file is kept for their results."
        )
        return Response({"message": words, "outcome": outcome})


class ClassifierFile(APIView):
    @extend_schema(
        operation_id="classifiers_file",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The model file"
            ),
            (206, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="A byte range of it"
            ),
            **error_responses(401, 404, 416),
        },
        description="The model file (owner and team members only: a share never gives the file). Supports Range.",
    )
    def get(self, request: Request, code: str) -> HttpResponseBase:
        classifier = selectors.classifier_get_for_user(code=code, user=request.user)
        if not holds_files(user=request.user, obj=classifier):
            raise Http404("No such model file")  # shared read-only: the file stays with its owner/team
        return original_file_response(request._request, classifier)


classifier_list_view = large_upload_view(ClassifierList.as_view())
classifier_detail_view = ClassifierDetail.as_view()
classifier_file_view = ClassifierFile.as_view()
