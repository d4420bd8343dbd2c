"""API: analyses — create with every parameter the form has, the history with its filters,
detail (status, stage, progress, predictions, manifest, timings, files), cancel, re-run, delete,
result files (Range) and the ZIP — and the verifications of an analysis.

A create or re-run body is turned into the analysis form's data and validated by that form
(`analyses.runs.forms.AnalysisForm`), then by the same service as the page, so the API refuses
with the same words; the parameters the form has no field for (`top_k`, `inference_frames`)
go straight to the service, which checks them. Downloads go through the pages' own helpers
(listed files only, HTTP Range, the ZIP, reads recorded in the audit trail).
"""

from __future__ import annotations

from typing import Any

from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analyses.access import can_write
from analyses.api.common import (
    TeamRefSerializer,
    UserRefSerializer,
    form_errors,
    team_from_code,
    team_ref,
    user_ref,
)
from analyses.api.files import FileNegotiation, binary_responses
from analyses.files import RESULT_MEDIA_TYPES
from analyses.runs import selectors
from analyses.runs.filters import (
    MAX_SEARCH_CHARS,
    OUTCOME_CHOICES,
    SORT_CHOICES,
    history_filter,
)
from analyses.runs.forms import AnalysisForm, initial_from_analysis
from analyses.runs.models import Analysis, AnalysisStatus, Verification, VerificationStatus
from analyses.runs.params import INFERENCE_FRAMES, METHODS, AnalysisError
from analyses.runs.provenance import verification_payload
from analyses.runs.services import (
    analysis_cancel,
    analysis_create,
    analysis_delete,
    analysis_record_read,
    analysis_rerun,
)
from analyses.runs.verification import VerificationError, verification_get_for_user, verification_request
from analyses.runs.views import (
    _listed_result_names,
    result_file_response,
    result_zip_response,
    status_payload,
)
from gradcam_site.api import AnalysisCreateThrottle, api_error, error_responses, message_serializer

# A classifier has a handful of Conv3D layers; this only keeps a hostile body from being big work.
MAX_LAYERS_GIVEN = 500


# --------------------------------------------------------------------------- output
class RefSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    name = serializers.CharField()


class AnalysisRefSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    title = serializers.CharField()
    status = serializers.CharField()
    url = serializers.CharField()


class ResultFileSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Relative to the analysis's results (e.g. layers/00/heatmap.mp4)")
    role = serializers.CharField(
        help_text="What it is, as the manifest says (manifest, heatmap_video, raw_maps...)"
    )
    layer = serializers.CharField(allow_null=True)
    media_type = serializers.CharField()
    bytes = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_blank=True)
    url = serializers.CharField(help_text="Download (supports Range; add ?download=1 for an attachment)")


class AnalysisSummarySerializer(serializers.Serializer):
    code = serializers.UUIDField()
    title = serializers.CharField(allow_blank=True)
    owner = UserRefSerializer()
    team = TeamRefSerializer(allow_null=True)
    classifier = RefSerializer()
    video = RefSerializer()
    status = serializers.ChoiceField(choices=AnalysisStatus.choices)
    status_label = serializers.CharField()
    stage = serializers.CharField(allow_blank=True)
    progress = serializers.IntegerField(help_text="Percent, 0-100")
    active = serializers.BooleanField(help_text="Queued or running")
    cancel_requested = serializers.BooleanField()
    method = serializers.CharField()
    params = serializers.DictField(help_text="Every parameter, defaults filled in (the engine's schema)")
    expected_class = serializers.IntegerField(allow_null=True)
    expected_label = serializers.CharField(allow_blank=True)
    predicted_class = serializers.IntegerField(allow_null=True)
    predicted_label = serializers.CharField(allow_blank=True)
    confidence = serializers.FloatField(allow_null=True, help_text="The predicted class's probability")
    is_correct = serializers.BooleanField(allow_null=True, help_text="null without an expected class")
    error_message = serializers.CharField(allow_blank=True, help_text="Why it failed, in words")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    parent = AnalysisRefSerializer(allow_null=True, help_text="The analysis this one re-runs, if you see it")
    can_write = serializers.BooleanField(help_text="Whether you may cancel, re-run or delete it")
    url = serializers.CharField()


class AnalysisSerializer(AnalysisSummarySerializer):
    attempts = serializers.IntegerField()
    predictions = serializers.DictField(help_text="Scores, top-k, predicted and expected labels")
    manifest = serializers.DictField(help_text="The engine's manifest.json (empty until it succeeded)")
    timings = serializers.DictField(help_text="Seconds per stage")
    versions = serializers.DictField(help_text="Engine and library versions")
    input_hashes = serializers.DictField(help_text="SHA-256 of the model and video files used")
    results_bytes = serializers.IntegerField()
    reruns = AnalysisRefSerializer(many=True, help_text="Re-runs of this analysis that you see")
    files = ResultFileSerializer(many=True, help_text="Every result file (empty until it succeeded)")
    zip_url = serializers.CharField(
        allow_null=True,
        help_text="Every result file as one ZIP (a redirect to it when files come from an object store or nginx)",
    )
    verifications_url = serializers.CharField()


def _api_url(request: Request, path: str) -> str:
    return request.build_absolute_uri(f"/api/v1/{path}")


def analysis_ref(analysis: Analysis, *, request: Request) -> dict[str, Any]:
    return {
        "code": analysis.code,
        "title": analysis.title,
        "status": analysis.status,
        "url": _api_url(request, f"analyses/{analysis.code}/"),
    }


def analysis_summary(analysis: Analysis, *, request: Request, parent: Analysis | None) -> dict[str, Any]:
    """The fields of a history row; `parent` is the parent only when the caller may see it."""
    state = status_payload(analysis)
    return {
        "code": analysis.code,
        "title": analysis.title,
        "owner": user_ref(analysis.owner),
        "team": team_ref(analysis.team),
        "classifier": {"code": analysis.classifier.code, "name": analysis.classifier.name},
        "video": {"code": analysis.video.code, "name": analysis.video.name},
        **{
            name: state[name]
            for name in (
                "status",
                "status_label",
                "stage",
                "progress",
                "active",
                "expected_class",
                "expected_label",
                "predicted_class",
                "predicted_label",
                "error_message",
            )
        },
        "cancel_requested": analysis.cancel_requested,
        "method": analysis.method,
        "params": analysis.params or {},
        "confidence": analysis.confidence,
        "is_correct": analysis.is_correct,
        "created_at": analysis.created_at,
        "started_at": analysis.started_at,
        "finished_at": analysis.finished_at,
        "parent": analysis_ref(parent, request=request) if parent is not None else None,
        "can_write": can_write(user=request.user, obj=analysis),
        "url": _api_url(request, f"analyses/{analysis.code}/"),
    }


def _has_results(analysis: Analysis) -> bool:
    return analysis.status == AnalysisStatus.SUCCEEDED and bool(analysis.results_dir and analysis.manifest)


def result_files(analysis: Analysis, *, request: Request) -> list[dict[str, Any]]:
    """The files the analysis serves (manifest.json and every file its manifest lists)."""
    if not _has_results(analysis):
        return []
    records = {
        str(record.get("path")): record
        for record in (analysis.manifest or {}).get("files") or []
        if isinstance(record, dict)
    }
    rows = []
    for name in _listed_result_names(analysis):
        record = records.get(name) or {}
        rows.append(
            {
                "path": name,
                "role": str(record.get("role") or ("manifest" if name == "manifest.json" else "")),
                "layer": str(record["layer"]) if record.get("layer") is not None else None,
                "media_type": str(record.get("media_type") or "application/json"),
                "bytes": record.get("bytes") if isinstance(record.get("bytes"), int) else None,
                "sha256": str(record.get("sha256") or ""),
                "url": _api_url(request, f"analyses/{analysis.code}/files/{name}"),
            }
        )
    return rows


def analysis_data(analysis: Analysis, *, request: Request) -> dict[str, Any]:
    visible = selectors.analyses_visible_to(user=request.user)
    parent = visible.filter(pk=analysis.parent_id).first() if analysis.parent_id else None
    reruns = visible.filter(parent=analysis).order_by("created_at")
    return {
        **analysis_summary(analysis, request=request, parent=parent),
        "attempts": analysis.attempts,
        "predictions": analysis.predictions or {},
        "manifest": analysis.manifest or {},
        "timings": analysis.timings or {},
        "versions": analysis.versions or {},
        "input_hashes": analysis.input_hashes or {},
        "results_bytes": analysis.results_bytes,
        "reruns": [analysis_ref(rerun, request=request) for rerun in reruns],
        "files": result_files(analysis, request=request),
        "zip_url": _api_url(request, f"analyses/{analysis.code}/download.zip")
        if _has_results(analysis)
        else None,
        "verifications_url": _api_url(request, f"analyses/{analysis.code}/verifications/"),
    }


# --------------------------------------------------------------------------- input
class PreprocessSerializer(serializers.Serializer):
    frame_stride = serializers.IntegerField(required=False, min_value=1, max_value=16)
    frame_offset = serializers.IntegerField(required=False, min_value=0, max_value=16)
    resize_mode = serializers.ChoiceField(required=False, choices=["stretch", "center_crop", "letterbox"])
    scaling = serializers.ChoiceField(
        required=False,
        choices=["auto", "unit", "symmetric", "raw", "mean_std"],
        help_text="`auto`: what the model's input layers expect",
    )
    mean = serializers.ListField(
        child=serializers.FloatField(),
        required=False,
        allow_null=True,
        max_length=16,
        help_text="mean_std only",
    )
    std = serializers.ListField(
        child=serializers.FloatField(),
        required=False,
        allow_null=True,
        max_length=16,
        help_text="mean_std only",
    )


class AnalysisParamsSerializer(serializers.Serializer):
    expected_class = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="The true class; null: unknown (no inference maps)",
    )
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)
    layers = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        max_length=MAX_LAYERS_GIVEN,
        help_text="Conv3D layer names; empty or absent: every layer",
    )
    method = serializers.ChoiceField(required=False, choices=list(METHODS))
    pooling = serializers.ChoiceField(
        required=False, allow_null=True, choices=["global", "temporal"], help_text="Grad-CAM(++) only"
    )
    bbox_threshold = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0.01,
        max_value=0.99,
        help_text="Fixed fraction of each frame's maximum; null: Otsu's threshold per frame",
    )
    colormap = serializers.CharField(required=False)
    alpha = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    top_k = serializers.IntegerField(required=False, min_value=1, help_text="At most the model's class count")
    inference_frames = serializers.ChoiceField(required=False, choices=list(INFERENCE_FRAMES))
    preprocess = PreprocessSerializer(required=False)


class AnalysisCreateSerializer(AnalysisParamsSerializer):
    classifier = serializers.UUIDField(help_text="Code of a ready model you may use")
    video = serializers.UUIDField(help_text="Code of a ready video you may use")
    team = serializers.UUIDField(required=False, allow_null=True, help_text="Share with one of your teams")


_SCALAR_FIELDS = ("classifier", "video", "title", "method", "pooling", "colormap", "alpha")
_PREPROCESS_FIELDS = ("frame_stride", "frame_offset", "resize_mode", "scaling")
_CHANNEL_FIELDS = ("mean", "std")
_SERVICE_ONLY = ("top_k", "inference_frames")  # parameters the form has no field for
_KNOWN = frozenset(
    {*_SCALAR_FIELDS, *_SERVICE_ONLY, "team", "expected_class", "layers", "bbox_threshold", "preprocess"}
)


def _scalar(value: Any, *, field: str) -> str:
    if isinstance(value, (dict, list)):
        raise ValidationError({field: ["Give a single value here, not a list or an object."]})
    return "" if value is None else str(value)


def _channel_text(value: Any, *, field: str) -> str:
    """mean/std as the form's text field takes them ("0.485, 0.456, 0.406")."""
    if isinstance(value, list):
        if len(value) > 16:
            raise ValidationError({field: ["Give one value or one per channel."]})
        return ", ".join(_scalar(item, field=field) for item in value)
    return _scalar(value, field=field)


def _object(value: Any, *, message: str, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError({field: [message]})
    return value


def _preprocess_values(body: dict[str, Any]) -> dict[str, str]:
    given = _object(
        body["preprocess"],
        message="The preprocessing options must be a set of named values.",
        field="preprocess",
    )
    unknown = sorted(set(given) - {*_PREPROCESS_FIELDS, *_CHANNEL_FIELDS})
    if unknown:
        message = f"Unknown preprocessing option(s): {', '.join(unknown)}."
        raise ValidationError({"preprocess": [message]})
    values = {name: _scalar(given[name], field=name) for name in _PREPROCESS_FIELDS if name in given}
    values.update({name: _channel_text(given[name], field=name) for name in _CHANNEL_FIELDS if name in given})
    return values


def form_data_from_body(body: Any, *, base: dict[str, Any]) -> dict[str, Any]:
    """The analysis form's data: `base` (defaults, or the analysis a re-run starts from) with the
    JSON body's values in the form's own terms, so the form's checks and words apply."""
    body = _object(body, message="The body must be a JSON object.", field="non_field_errors")
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise ValidationError({unknown[0]: [f"Unknown analysis parameter(s): {', '.join(unknown)}."]})
    data = dict(base)
    data.update({name: _scalar(body[name], field=name) for name in _SCALAR_FIELDS if name in body})
    if "expected_class" in body:
        data["expected_class"] = _scalar(body["expected_class"], field="expected_class")
    if "layers" in body:
        layers = body["layers"] if isinstance(body["layers"], list) else [body["layers"]]
        if len(layers) > MAX_LAYERS_GIVEN:
            raise ValidationError({"layers": [f"Give at most {MAX_LAYERS_GIVEN} layers."]})
        data["layers"] = [_scalar(layer, field="layers") for layer in layers if layer is not None]
    if "bbox_threshold" in body:
        threshold = _scalar(body["bbox_threshold"], field="bbox_threshold")
        otsu = threshold.strip().lower() in ("", "otsu")
        data["bbox_mode"] = "otsu" if otsu else "threshold"
        data["bbox_threshold"] = "" if otsu else threshold
    if "preprocess" in body:
        data.update(_preprocess_values(body))
    return data


def service_only_params(body: dict[str, Any]) -> dict[str, Any]:
    """`top_k` and `inference_frames` as given (the service checks them, in its words)."""
    return {name: body[name] for name in _SERVICE_ONLY if name in body}


def _create_defaults() -> dict[str, Any]:
    """What the new-analysis form starts with (its fields' initial values)."""
    initial = {
        name: field.initial for name, field in AnalysisForm.base_fields.items() if field.initial is not None
    }
    return {"layers": [], "expected_class": "", "title": "", "mean": "", "std": "", **initial}


def _refusal(exc: AnalysisError) -> Response:
    """A service refusal: at its field (400), or about the user's state — too many analyses
    active — when it names none (409)."""
    if exc.field:
        return api_error(exc.message, status=400, code="invalid", fields={exc.field: [exc.message]})
    return api_error(exc.message, status=409, code="conflict")


def _checked_form(data: dict[str, Any], *, request: Request, fixed: Analysis | None = None) -> AnalysisForm:
    form = AnalysisForm(data, user=request.user, fixed_analysis=fixed)
    if not form.is_valid():
        raise form_errors(form)
    return form


# --------------------------------------------------------------------------- history, create
_HISTORY_PARAMETERS = [
    OpenApiParameter(
        "q", str, description=f"Search titles, names, owners, teams and labels (≤ {MAX_SEARCH_CHARS})"
    ),
    OpenApiParameter("classifier", OpenApiTypes.UUID, description="Only analyses of this model"),
    OpenApiParameter("video", OpenApiTypes.UUID, description="Only analyses of this video"),
    OpenApiParameter("status", str, enum=AnalysisStatus.values),
    OpenApiParameter("outcome", str, enum=[value for value, _ in OUTCOME_CHOICES]),
    OpenApiParameter("predicted", str, description="Predicted class: an index or a label"),
    OpenApiParameter("expected", str, description="Expected class: an index or a label"),
    OpenApiParameter("method", str, enum=list(METHODS)),
    OpenApiParameter("owner", str, description="Username: you or someone in one of your teams"),
    OpenApiParameter("team", OpenApiTypes.UUID, description="Code of one of your teams"),
    OpenApiParameter("shared", bool, description="Only analyses others share with you"),
    OpenApiParameter("created_after", OpenApiTypes.DATE),
    OpenApiParameter("created_before", OpenApiTypes.DATE),
    OpenApiParameter("sort", str, enum=[value for value, _ in SORT_CHOICES], description="Default -date"),
]


class AnalysisList(GenericAPIView):
    parser_classes = [JSONParser]
    queryset = Analysis.objects.none()  # for the schema's model name; reads use the selector
    filter_backends: list[Any] = []  # the history's FilterSet is applied in get(), over the selector

    def get_throttles(self) -> list[Any]:
        return [AnalysisCreateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        operation_id="analyses_list",
        parameters=_HISTORY_PARAMETERS,
        responses={200: AnalysisSummarySerializer(many=True), **error_responses(400, 401, 404)},
        description="The history, with the history page's filters, search and sorts.",
    )
    def get(self, request: Request) -> Response:
        history = history_filter(data=request.query_params, user=request.user, request=request)
        if not history.is_valid():
            raise form_errors(history.form)
        page = list(self.paginate_queryset(history.qs) or [])
        parent_ids = {analysis.parent_id for analysis in page if analysis.parent_id}
        parents = {
            parent.pk: parent
            for parent in selectors.analyses_visible_to(user=request.user).filter(pk__in=parent_ids)
        }
        return self.get_paginated_response(
            [
                analysis_summary(analysis, request=request, parent=parents.get(analysis.parent_id or 0))
                for analysis in page
            ]
        )

    @extend_schema(
        operation_id="analyses_create",
        request=AnalysisCreateSerializer,
        responses={202: AnalysisSerializer, **error_responses(400, 401, 409, 429)},
        description="Queue an analysis (same checks and words as the new-analysis form). Poll its "
        "detail until `active` is false.",
    )
    def post(self, request: Request) -> Response:
        body = request.data
        data = form_data_from_body(body, base=_create_defaults())
        team = team_from_code(code=body.get("team"), user=request.user)
        form = _checked_form({**data, "team": team.pk if team else ""}, request=request)
        try:
            analysis = analysis_create(
                user=request.user,
                classifier=form.cleaned_data["classifier"],
                video=form.cleaned_data["video"],
                expected_class=form.expected_class_value(),
                params={**form.analysis_params(), **service_only_params(body)},
                team=form.cleaned_data.get("team"),
                title=form.cleaned_data.get("title") or "",
            )
        except AnalysisError as exc:
            return _refusal(exc)
        return Response(analysis_data(analysis, request=request), status=status.HTTP_202_ACCEPTED)


# --------------------------------------------------------------------------- one analysis
class AnalysisDetail(APIView):
    @extend_schema(
        operation_id="analyses_retrieve",
        responses={200: AnalysisSerializer, **error_responses(401, 404)},
        description="Its state while it runs; once it succeeded, its results (a read, recorded in "
        "the audit trail as the result page is).",
    )
    def get(self, request: Request, code: str) -> Response:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user)
        if _has_results(analysis):
            # Polls of a running analysis are not reads of its results; the finished one is.
            analysis_record_read(user=request.user, analysis=analysis, action="analysis.viewed")
        return Response(analysis_data(analysis, request=request))

    @extend_schema(
        operation_id="analyses_destroy",
        responses={200: message_serializer("AnalysisDeletedMessage"), **error_responses(401, 403, 404, 409)},
        description="Deletes a finished or queued analysis with its result files (a running one: cancel first).",
    )
    def delete(self, request: Request, code: str) -> Response:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user, for_write=True)
        try:
            analysis_delete(user=request.user, analysis=analysis)
        except AnalysisError as exc:
            return api_error(exc.message, status=409, code="conflict")
        return Response({"message": "Analysis deleted with its result files."})


class AnalysisCancel(APIView):
    @extend_schema(
        operation_id="analyses_cancel",
        request=None,
        responses={200: AnalysisSerializer, **error_responses(401, 403, 404, 409)},
        description="A queued analysis is cancelled at once; a running one is flagged and stopped by "
        "its worker within seconds (`cancel_requested`).",
    )
    def post(self, request: Request, code: str) -> Response:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user, for_write=True)
        try:
            analysis = analysis_cancel(user=request.user, analysis=analysis)
        except AnalysisError as exc:
            return api_error(exc.message, status=409, code="conflict")
        return Response(analysis_data(analysis, request=request))


class AnalysisRerun(APIView):
    parser_classes = [JSONParser]
    throttle_classes = [AnalysisCreateThrottle]

    @extend_schema(
        operation_id="analyses_rerun",
        request=AnalysisParamsSerializer,
        responses={202: AnalysisSerializer, **error_responses(400, 401, 403, 404, 409, 429)},
        description="A new analysis of the same model and video, linked to this one (`parent`), with "
        "the parameters given changed and every other one kept.",
    )
    def post(self, request: Request, code: str) -> Response:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user, for_write=True)
        body = request.data
        fixed = {"classifier", "video", "team"} & set(body if isinstance(body, dict) else {})
        if fixed:
            message = "A re-run keeps the model, the video and the team; change only the parameters, the expected class and the title."
            raise ValidationError({sorted(fixed)[0]: [message]})
        base = {
            key: value
            for key, value in initial_from_analysis(analysis).items()
            if key not in ("classifier", "video", "team")
        }
        form = _checked_form(form_data_from_body(body, base=base), request=request, fixed=analysis)
        try:
            rerun = analysis_rerun(
                user=request.user,
                analysis=analysis,
                params_changes={**form.analysis_params(), **service_only_params(body)},
                expected_class=form.expected_class_value(),
                title=form.cleaned_data.get("title") or "",
            )
        except AnalysisError as exc:
            return _refusal(exc)
        return Response(analysis_data(rerun, request=request), status=status.HTTP_202_ACCEPTED)


# --------------------------------------------------------------------------- results
class AnalysisFiles(GenericAPIView):
    queryset = Analysis.objects.none()
    filter_backends: list[Any] = []

    @extend_schema(
        operation_id="analyses_files_list",
        responses={200: ResultFileSerializer(many=True), **error_responses(401, 404)},
        description="The result files (empty until the analysis succeeded).",
    )
    def get(self, request: Request, code: str) -> Response:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user)
        page = self.paginate_queryset(result_files(analysis, request=request)) or []
        return self.get_paginated_response(page)


class AnalysisFile(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="analyses_file",
        parameters=[OpenApiParameter("path", str, OpenApiParameter.PATH, description="A listed file's path")],
        responses=binary_responses(
            tuple(sorted(set(RESULT_MEDIA_TYPES.values()))), "The file, with its own media type"
        ),
        description="One listed result file (images, heatmap videos, raw maps, manifest.json). Supports "
        "Range; `?download=1` makes it an attachment (recorded in the audit trail).",
    )
    def get(self, request: Request, code: str, path: str) -> HttpResponseBase:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user)
        return result_file_response(request._request, analysis=analysis, path=path)


class AnalysisZip(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="analyses_zip",
        responses=binary_responses("application/zip", "Every result file as one ZIP", ranges=False),
    )
    def get(self, request: Request, code: str) -> HttpResponseBase:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user)
        return result_zip_response(request._request, analysis=analysis)


# --------------------------------------------------------------------------- verifications
class VerificationSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    analysis = AnalysisRefSerializer()
    requested_by = UserRefSerializer(allow_null=True)
    status = serializers.ChoiceField(choices=VerificationStatus.choices)
    status_label = serializers.CharField()
    stage = serializers.CharField(allow_blank=True)
    progress = serializers.IntegerField(help_text="Percent, 0-100")
    active = serializers.BooleanField()
    outcome = serializers.CharField(allow_blank=True, help_text="identical, differs or inputs_changed")
    summary = serializers.CharField(allow_blank=True)
    error_message = serializers.CharField(allow_blank=True)
    verdict = serializers.DictField(help_text="Per layer and class: the maps' largest relative difference")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.CharField()


def verification_data(verification: Verification, *, request: Request) -> dict[str, Any]:
    payload = verification_payload(verification)
    payload.pop("status_url", None)  # the page's; `url` is the API's
    return {
        **payload,
        "code": verification.code,
        "analysis": analysis_ref(verification.analysis, request=request),
        "requested_by": user_ref(verification.requested_by),
        "verdict": verification.verdict or {},
        "created_at": verification.created_at,
        "started_at": verification.started_at,
        "finished_at": verification.finished_at,
        "url": _api_url(request, f"verifications/{verification.code}/"),
    }


class AnalysisVerifications(GenericAPIView):
    queryset = Verification.objects.none()
    filter_backends: list[Any] = []

    @extend_schema(
        operation_id="analyses_verifications_list",
        responses={200: VerificationSerializer(many=True), **error_responses(401, 404)},
        description="The verifications of this analysis, newest first.",
    )
    def get(self, request: Request, code: str) -> Response:
        analysis = selectors.analysis_get_for_user(code=code, user=request.user)
        queryset = analysis.verifications.select_related("analysis__classifier", "requested_by")
        page = self.paginate_queryset(queryset.order_by("-created_at", "-pk")) or []
        return self.get_paginated_response([verification_data(item, request=request) for item in page])


class AnalysisVerify(APIView):
    throttle_classes = [AnalysisCreateThrottle]

    @extend_schema(
        operation_id="analyses_verify",
        request=None,
        responses={202: VerificationSerializer, **error_responses(401, 404, 409, 429)},
        description="Re-run this analysis in a worker and compare its maps with the stored ones. Anyone "
        "who sees the analysis may; one verification at a time per analysis (409 otherwise).",
    )
    def post(self, request: Request, code: str) -> Response:
        # Not for writing: a verification changes nothing in the analysis (as the page's Verify).
        analysis = selectors.analysis_get_for_user(code=code, user=request.user)
        try:
            verification = verification_request(user=request.user, analysis=analysis)
        except VerificationError as exc:
            return api_error(exc.message, status=409, code="conflict")
        return Response(verification_data(verification, request=request), status=status.HTTP_202_ACCEPTED)


class VerificationDetail(APIView):
    @extend_schema(
        operation_id="verifications_retrieve",
        responses={200: VerificationSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, code: str) -> Response:
        verification = verification_get_for_user(code=code, user=request.user)
        return Response(verification_data(verification, request=request))


analysis_list_view = AnalysisList.as_view()
analysis_detail_view = AnalysisDetail.as_view()
analysis_cancel_view = AnalysisCancel.as_view()
analysis_rerun_view = AnalysisRerun.as_view()
analysis_files_view = AnalysisFiles.as_view()
analysis_file_view = AnalysisFile.as_view()
analysis_zip_view = AnalysisZip.as_view()
analysis_verifications_view = AnalysisVerifications.as_view()
analysis_verify_view = AnalysisVerify.as_view()
verification_detail_view = VerificationDetail.as_view()
