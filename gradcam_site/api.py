"""What every endpoint of the REST API (`/api/v1/`) shares: one error shape, pagination, per-user
throttles, and the catch-all JSON 404. (DRF's views exempt themselves from Django's LoginRequiredMiddleware:
DRF authenticates the request itself, and an anonymous one gets a 401 in the one shape.)

Errors always have this shape, with the same words the pages show:

    {"error": {"status": 404, "code": "not_found", "message": "Not found.",
               "fields": {"name": ["This field is required."]}}}

`fields` is present only for invalid input (400).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.metadata import SimpleMetadata
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

API_PAGE_SIZE = 25
API_MAX_PAGE_SIZE = 100


class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API."""

    error = ErrorDetailSerializer()


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error statuses an endpoint answers with."""
    words = {
        400: "Invalid input (see `fields`)",
        401: "Not authenticated, or an invalid, revoked or expired token",
        403: "Read-only for you (or not allowed)",
        404: "Not found, or not visible to you",
        409: "Conflicts with the object's current state",
        413: "The upload is over its size limit",
        416: "The requested byte range is not satisfiable",
        429: "Too many requests: see Retry-After",
    }
    return {
        status: OpenApiResponse(ErrorSerializer, description=words.get(status, "")) for status in statuses
    }


def _first_words(detail: Any) -> str:
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_words(value)
        return "Invalid input."
    if isinstance(detail, list):
        return _first_words(detail[0]) if detail else "Invalid input."
    return str(detail)


def _field_errors(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            str(name): [str(item) for item in (value if isinstance(value, list) else [value])]
            for name, value in detail.items()
        }
    return {"non_field_errors": [str(item) for item in (detail if isinstance(detail, list) else [detail])]}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, then every error rewritten into the one shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "You do not have permission to do this.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a server error: Django's 500 handling (and logging) takes it
    detail = getattr(exc, "detail", response.data)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    body: dict[str, Any] = {
        "status": response.status_code,
        "code": code if isinstance(code, str) else ("invalid" if response.status_code == 400 else "error"),
        "message": _first_words(detail),
    }
    if isinstance(exc, exceptions.ValidationError):
        body["fields"] = _field_errors(detail)
    response.data = {"error": body}
    return response


def api_error(
    message: str, *, status: int, code: str, fields: dict[str, list[str]] | None = None
) -> Response:
    """An error response in the one shape, for refusals a view turns into a status itself."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return Response({"error": body}, status=status)


class ApiPagination(PageNumberPagination):
    page_size = API_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = API_MAX_PAGE_SIZE


class UploadThrottle(UserRateThrottle):
    """Uploads of models and videos, per user (GRADCAM_API_UPLOADS_PER_HOUR)."""

    scope = "uploads"


class AnalysisCreateThrottle(UserRateThrottle):
    """Analyses, re-runs and verifications started, per user (GRADCAM_API_ANALYSES_PER_HOUR)."""

    scope = "analyses"


class ApiMetadata(SimpleMetadata):
    """OPTIONS answers with the view's name, description and media types, without DRF's
    description of the request body: that needs a `serializer_class`, which views that validate
    with the pages' forms do not have (DRF would answer 500); the OpenAPI schema describes them."""

    def determine_actions(self, request: Any, view: Any) -> dict[str, Any]:
        return {}


@login_not_required  # an anonymous client gets this JSON 404, not the login page
@csrf_exempt  # it changes nothing; a token client's POST must get this 404, not CSRF's HTML 403
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any /api/v1/ address no endpoint matches (an unknown path, a malformed code): the API's
    404 in its one shape, not the site's HTML page."""
    return JsonResponse({"error": {"status": 404, "code": "not_found", "message": "Not found."}}, status=404)


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _declare_body_refusals(operation: dict[str, Any]) -> None:
    """What RequestBodyLimitMiddleware answers, before any view, to a request with a body: a
    body over the limit (413), a body of unknown length (411), a malformed Content-Length (400)."""
    responses = operation.setdefault("responses", {})
    responses.setdefault("400", {"description": "Invalid input", "content": _ERROR_CONTENT})
    responses.setdefault("411", {"description": "A body without a Content-Length", "content": _ERROR_CONTENT})
    responses.setdefault("413", {"description": "The body is over its size limit", "content": _ERROR_CONTENT})


def schema_declare_page_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: every paginated list answers 404 ("Invalid page.")
    for a page number below 1 or past the last page, and every operation with a body may be
    refused by the body-size middleware; declared here once for every operation."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            parameters = operation.get("parameters") or []
            if operation.get("requestBody"):
                _declare_body_refusals(operation)
            page = [p for p in parameters if p.get("in") == "query" and p.get("name") == "page"]
            if not page:
                continue
            page[0].setdefault("schema", {})["minimum"] = 1
            operation.setdefault("responses", {}).setdefault(
                "404",
                {
                    "description": "No such page: below 1 or past the last page",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            )
    return result


def message_serializer(name: str) -> Any:
    return inline_serializer(name=name, fields={"message": serializers.CharField()})


def docs_view(view: Any) -> Any:
    """The Swagger UI page: the site's Content-Security-Policy with inline *styles* allowed (the
    UI sets element styles from its own script); scripts stay 'self' only."""
    from functools import wraps

    from django.conf import settings

    @wraps(view)
    def with_policy(request: Any, *args: Any, **kwargs: Any) -> Any:
        response = view(request, *args, **kwargs)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy:
            response["Content-Security-Policy"] = policy.replace(
                "style-src 'self'", "style-src 'self' 'unsafe-inline'"
            )
        return response

    return with_policy
