"""API: saved comparisons (2-4 columns side by side) and the difference of two columns' maps,
through the comparison selectors and services: who may see a comparison or a difference is
decided by `comparison_get_for_user` / `columns_from_values` / `difference_get_for_user`, all
built on `analyses_visible_to`, as on the pages.

A column is written as on the page's URL: `<analysis code>[:<layer position>[:<class>]]`
(positions count in the analysis's selected layers; no position: its last one).
"""

from __future__ import annotations

from typing import Any

from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analyses.api.common import UserRefSerializer, user_ref
from analyses.compare import selectors
from analyses.compare.models import MAX_COLUMNS, Comparison, ComparisonDifference, DifferenceStatus
from analyses.compare.presentation import comparison_context
from analyses.compare.selectors import Column, ComparisonError
from analyses.compare.services import (
    MAX_TITLE_CHARS,
    comparison_create,
    comparison_delete,
    difference_request,
)
from analyses.compare.views import difference_file_response
from gradcam_site.api import api_error, error_responses, message_serializer

_MAX_COLUMN_VALUES = 20  # read at most this many values; the service refuses more than 4 in words
_MAX_VALUE_CHARS = 80


def _api_url(request: Request, path: str) -> str:
    return request.build_absolute_uri(f"/api/v1/{path}")


def _refusal(error: ComparisonError, *, field: str) -> Response:
    return api_error(error.message, status=error.status, code="invalid", fields={field: [error.message]})


# --------------------------------------------------------------------------- differences
class DifferenceSerializer(serializers.Serializer):
    code = serializers.UUIDField(allow_null=True, help_text="Null when none was requested yet")
    a = serializers.CharField(help_text="Column A, as written in a comparison")
    b = serializers.CharField(help_text="Column B")
    status = serializers.ChoiceField(choices=["none", *DifferenceStatus.values])
    message = serializers.CharField(help_text="Why it failed, when it did")
    status_url = serializers.CharField(allow_null=True)
    frames = serializers.ListField(
        child=serializers.CharField(), help_text="Per-frame difference images (PNG), once ready"
    )
    legend_url = serializers.CharField(allow_null=True)
    mean_abs = serializers.FloatField(allow_null=True)
    max_abs = serializers.FloatField(allow_null=True)
    mean_abs_per_frame = serializers.ListField(child=serializers.FloatField())


def difference_data(
    difference: ComparisonDifference | None, *, column_a: Column, column_b: Column, request: Request
) -> dict[str, Any]:
    """A difference row (what the page's `difference_payload` says), with the API's file URLs."""
    data: dict[str, Any] = {
        "code": None,
        "a": column_a.value,
        "b": column_b.value,
        "status": "none",
        "message": "",
        "status_url": None,
        "frames": [],
        "legend_url": None,
        "mean_abs": None,
        "max_abs": None,
        "mean_abs_per_frame": [],
    }
    if difference is None:
        return data
    base = f"differences/{difference.code}/"
    data.update(
        code=difference.code,
        status=difference.status,
        message=difference.message,
        status_url=_api_url(request, base),
    )
    if difference.status == DifferenceStatus.READY:
        result = difference.result or {}
        data.update(
            frames=[_api_url(request, f"{base}files/{name}") for name in result.get("frames") or []],
            legend_url=_api_url(request, f"{base}files/{result.get('legend') or 'legend.png'}"),
            mean_abs=result.get("mean_abs"),
            max_abs=result.get("max_abs"),
            mean_abs_per_frame=result.get("mean_abs_per_frame") or [],
        )
    return data


def _difference_columns(difference: ComparisonDifference) -> tuple[Column, Column]:
    return (
        Column(analysis=difference.analysis_a, layer_name=difference.layer_a, class_index=difference.class_a),
        Column(analysis=difference.analysis_b, layer_name=difference.layer_b, class_index=difference.class_b),
    )


class DifferenceRequestSerializer(serializers.Serializer):
    a = serializers.CharField(max_length=_MAX_VALUE_CHARS, help_text="`<analysis code>[:<layer>[:<class>]]`")
    b = serializers.CharField(max_length=_MAX_VALUE_CHARS, help_text="The other column")


class DifferenceCreate(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        operation_id="differences_create",
        request=DifferenceRequestSerializer,
        responses={202: DifferenceSerializer, **error_responses(400, 401, 403, 404)},
        description="Compute (or find) the signed difference of two columns' maps: they must explain "
        "the same video from the same frames. Queued for a worker: poll `status_url`.",
    )
    def post(self, request: Request) -> Response:
        body = DifferenceRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            column_a, column_b = selectors.columns_from_values(
                values=[body.validated_data["a"], body.validated_data["b"]], user=request.user
            )
            difference = difference_request(user=request.user, column_a=column_a, column_b=column_b)
        except ComparisonError as error:
            return _refusal(error, field="non_field_errors")
        return Response(
            difference_data(difference, column_a=column_a, column_b=column_b, request=request),
            status=status.HTTP_202_ACCEPTED,
        )


class DifferenceDetail(APIView):
    @extend_schema(
        operation_id="differences_retrieve",
        responses={200: DifferenceSerializer, **error_responses(401, 404)},
        description="The difference's state, and its images once ready (visible to whoever may see "
        "both analyses).",
    )
    def get(self, request: Request, code: str) -> Response:
        difference = selectors.difference_get_for_user(code=code, user=request.user)
        column_a, column_b = _difference_columns(difference)
        response = Response(
            difference_data(difference, column_a=column_a, column_b=column_b, request=request)
        )
        response["Cache-Control"] = "no-store"
        return response


class DifferenceFile(APIView):
    @extend_schema(
        operation_id="differences_file",
        responses={
            (200, "image/png"): OpenApiResponse(
                OpenApiTypes.BINARY, description="A difference image or its legend"
            ),
            (206, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="A byte range of it"),
            **error_responses(401, 404, 416),
        },
    )
    def get(self, request: Request, code: str, path: str) -> HttpResponseBase:
        difference = selectors.difference_get_for_user(code=code, user=request.user)
        return difference_file_response(request._request, difference=difference, path=path)


# --------------------------------------------------------------------------- comparisons
class ColumnAnalysisSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    title = serializers.CharField()
    status = serializers.CharField()
    classifier = serializers.DictField(help_text="{code, name}")
    video = serializers.DictField(help_text="{code, name}")
    predicted_class = serializers.IntegerField(allow_null=True)
    expected_class = serializers.IntegerField(allow_null=True)
    url = serializers.CharField(help_text="The analysis in the API")


class ColumnSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    letter = serializers.CharField()
    value = serializers.CharField(help_text="The column as written when saving a comparison")
    analysis = ColumnAnalysisSerializer()
    ready = serializers.BooleanField(help_text="Whether the analysis finished with results")
    layer = serializers.CharField(help_text="The layer shown (full name)")
    layers = serializers.ListField(child=serializers.CharField(), help_text="The analysis's selected layers")
    class_index = serializers.IntegerField(allow_null=True, help_text="Null: the predicted class")
    predicted_label = serializers.CharField(allow_null=True)
    expected_label = serializers.CharField(allow_null=True)
    correct = serializers.BooleanField(allow_null=True)
    probability = serializers.FloatField(allow_null=True)
    fps = serializers.FloatField(allow_null=True)
    frames = serializers.IntegerField(allow_null=True)
    timestamps = serializers.ListField(child=serializers.FloatField(), help_text="Source time of each frame")
    source_frames = serializers.ListField(child=serializers.IntegerField())
    video_url = serializers.CharField(allow_null=True, help_text="The layer's heatmap video")
    images = serializers.ListField(child=serializers.CharField(), help_text="The layer's heatmap images")


class DifferenceRowSerializer(serializers.Serializer):
    a = serializers.CharField()
    b = serializers.CharField()
    available = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True, help_text="Why there is no difference for this pair")
    difference = DifferenceSerializer(allow_null=True)


class ComparisonListItemSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    title = serializers.CharField()
    owner = UserRefSerializer()
    created_at = serializers.DateTimeField()
    url = serializers.CharField()


class ComparisonSerializer(ComparisonListItemSerializer):
    can_delete = serializers.BooleanField()
    missing = serializers.IntegerField(
        help_text="Columns whose analysis you can no longer see, or was deleted"
    )
    alignment = serializers.ChoiceField(
        choices=["frame", "timestamp"],
        help_text="frame: frame i beside frame i; timestamp: each column's frame nearest in source time",
    )
    columns = ColumnSerializer(many=True)
    differences = DifferenceRowSerializer(many=True, help_text="Column A against each other column")


def comparison_item(comparison: Comparison, *, request: Request) -> dict[str, Any]:
    return {
        "code": comparison.code,
        "title": comparison.title,
        "owner": user_ref(comparison.owner),
        "created_at": comparison.created_at,
        "url": _api_url(request, f"comparisons/{comparison.code}/"),
    }


def _analysis_summary(analysis: Any, *, request: Request) -> dict[str, Any]:
    return {
        "code": analysis.code,
        "title": str(analysis),
        "status": analysis.status,
        "classifier": {"code": str(analysis.classifier.code), "name": analysis.classifier.name},
        "video": {"code": str(analysis.video.code), "name": analysis.video.name},
        "predicted_class": analysis.predicted_class,
        "expected_class": analysis.expected_class,
        "url": _api_url(request, f"analyses/{analysis.code}/"),
    }


def _column_data(entry: dict[str, Any], *, request: Request) -> dict[str, Any]:
    return {
        "position": entry["position"],
        "letter": entry["letter"],
        "value": entry["value"],
        "analysis": _analysis_summary(entry["analysis"], request=request),
        "ready": entry["ready"],
        "layer": entry["layer"],
        "layers": [choice["name"] for choice in entry["layer_choices"]],
        "class_index": entry["class_index"],
        "predicted_label": entry.get("predicted_label"),
        "expected_label": entry.get("expected_label"),
        "correct": entry.get("correct"),
        "probability": entry.get("probability"),
        "fps": entry.get("fps"),
        "frames": entry.get("frames"),
        "timestamps": entry.get("timestamps") or [],
        "source_frames": entry.get("source_frames") or [],
        "video_url": entry.get("video_url") or None,
        "images": entry.get("images") or [],
    }


def comparison_data(
    comparison: Comparison, *, columns: list[Column], missing: int, request: Request
) -> dict[str, Any]:
    """The saved comparison with its authorised columns, their files named by the API's views."""

    def file_url(analysis: Any, path: str) -> str:
        return _api_url(request, f"analyses/{analysis.code}/files/{path}")

    def difference_state(column_a: Column, column_b: Column) -> dict[str, Any]:
        stored = selectors.difference_for_pair(column_a=column_a, column_b=column_b)
        return difference_data(stored, column_a=column_a, column_b=column_b, request=request)

    context: dict[str, Any] = (
        comparison_context(columns=columns, file_url=file_url, difference_payload=difference_state)
        if columns
        else {"alignment": "frame", "columns": [], "differences": []}  # every analysis gone
    )
    return {
        **comparison_item(comparison, request=request),
        "can_delete": comparison.owner_id == request.user.pk,
        "missing": missing,
        "alignment": context["alignment"],
        "columns": [_column_data(entry, request=request) for entry in context["columns"]],
        "differences": [
            {
                "a": pair["a"]["value"],
                "b": pair["b"]["value"],
                "available": pair["reason"] is None,
                "reason": pair["reason"],
                "difference": pair["payload"],
            }
            for pair in context["differences"]
        ],
    }


class ComparisonCreateSerializer(serializers.Serializer):
    # Bounded here; the service refuses a blank or too long title in the page's words.
    title = serializers.CharField(allow_blank=True, max_length=5 * MAX_TITLE_CHARS)
    columns = serializers.ListField(
        child=serializers.CharField(max_length=_MAX_VALUE_CHARS),
        max_length=_MAX_COLUMN_VALUES,
        help_text=f"2 to {MAX_COLUMNS} columns, each `<analysis code>[:<layer position>[:<class>]]`",
    )


class ComparisonList(GenericAPIView):
    parser_classes = [JSONParser, FormParser]
    queryset = Comparison.objects.none()  # for the schema's model name; reads use the selector

    @extend_schema(
        operation_id="comparisons_list",
        responses={200: ComparisonListItemSerializer(many=True), **error_responses(401, 403)},
        description="Your saved comparisons, newest first.",
    )
    def get(self, request: Request) -> Response:
        page = (
            self.paginate_queryset(selectors.comparisons_owned_by(user=request.user).select_related("owner"))
            or []
        )
        return self.get_paginated_response([comparison_item(item, request=request) for item in page])

    @extend_schema(
        operation_id="comparisons_create",
        request=ComparisonCreateSerializer,
        responses={201: ComparisonSerializer, **error_responses(400, 401, 403, 404)},
        description="Save a comparison of 2-4 analyses or layers you can see (404 when one of them is "
        "not visible to you, without saying which).",
    )
    def post(self, request: Request) -> Response:
        body = ComparisonCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            columns = selectors.columns_from_values(values=body.validated_data["columns"], user=request.user)
        except ComparisonError as error:
            return _refusal(error, field="columns")
        try:
            comparison = comparison_create(
                user=request.user, title=body.validated_data["title"], columns=columns
            )
        except ComparisonError as error:
            return _refusal(error, field="title")
        data = comparison_data(comparison, columns=columns, missing=0, request=request)
        return Response(data, status=status.HTTP_201_CREATED)


class ComparisonDetail(APIView):
    @extend_schema(
        operation_id="comparisons_retrieve",
        responses={200: ComparisonSerializer, **error_responses(401, 404)},
        description="Visible to its owner and to anyone who may see every one of its analyses.",
    )
    def get(self, request: Request, code: str) -> Response:
        authorised = selectors.comparison_get_for_user(code=code, user=request.user)
        return Response(
            comparison_data(
                authorised.comparison, columns=authorised.columns, missing=authorised.missing, request=request
            )
        )

    @extend_schema(
        operation_id="comparisons_destroy",
        responses={200: message_serializer("ComparisonDeletedMessage"), **error_responses(401, 403, 404)},
        description="Only its owner deletes a comparison; its analyses stay.",
    )
    def delete(self, request: Request, code: str) -> Response:
        authorised = selectors.comparison_get_for_user(code=code, user=request.user)
        comparison_delete(user=request.user, comparison=authorised.comparison)
        return Response({"message": "Comparison deleted (its analyses are untouched)."})


comparison_list_view = ComparisonList.as_view()
comparison_detail_view = ComparisonDetail.as_view()
difference_create_view = DifferenceCreate.as_view()
difference_detail_view = DifferenceDetail.as_view()
difference_file_view = DifferenceFile.as_view()
