"""The streaming size limit of the API's multipart uploads, installed before DRF reads the body.

It cannot wait for the view method: with session authentication, DRF's CSRF check reads
`request.POST` while authenticating, which parses the whole multipart body (Django would write
every file part to a temporary file, whatever its size). `initialize_request` runs first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from analyses.api.common import form_errors, team_from_code
from analyses.library.services import DuplicateUpload, LibraryError
from analyses.library.uploads import UploadLimitHandler, install_upload_limit
from gradcam_site.api import UploadThrottle, api_error

UPLOAD_STATES = ("processing", "ready", "failed")


class UploadLimitMixin:
    """For an APIView whose POST is a multipart upload: `upload_limits()` gives each file
    field's limit; `self.upload_limit.refusal` then says whether (and why) one was over it."""

    upload_kind = "file"
    upload_limit: UploadLimitHandler | None = None

    def upload_limits(self) -> dict[str, int]:
        raise NotImplementedError

    def get_throttles(self) -> list[Any]:
        return [UploadThrottle()] if self.request.method == "POST" else []  # type: ignore[attr-defined]

    def uploads_page(
        self, request: Request, *, queryset: Any, data_of: Callable[..., dict[str, Any]]
    ) -> Response:
        """A page of uploads the caller may see (`queryset`), optionally only those in one
        processing state (`?status=`), each as `data_of` describes it."""
        wanted = request.query_params.get("status")
        if wanted in UPLOAD_STATES:
            queryset = queryset.filter(status=wanted)
        page = self.paginate_queryset(queryset) or []  # type: ignore[attr-defined]
        return self.get_paginated_response([data_of(item, request=request) for item in page])  # type: ignore[attr-defined]

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Request:
        if request.method == "POST":
            self.upload_limit = install_upload_limit(
                request, file_limits=self.upload_limits(), kind=self.upload_kind
            )
        return super().initialize_request(request, *args, **kwargs)  # type: ignore[misc]

    def upload_response(
        self,
        request: Request,
        *,
        form_class: type[Any],
        create: Callable[[dict[str, Any]], Any],
        refusal: Callable[[LibraryError], Response],
        data_of: Callable[..., dict[str, Any]],
    ) -> Response:
        """The upload flow of models and videos: the size limit (413), the page's form with the
        team given by code (400 in the form's words), the service `create(cleaned_data)`, a
        duplicate (409 naming the stored copy) or another refusal (`refusal`), else 202."""
        data = request.data  # parsed through the limit (initialize_request)
        limit = self.upload_limit
        if limit is not None and limit.refusal:
            return api_error(
                limit.refusal, status=413, code="too_large", fields={limit.refusal_field: [limit.refusal]}
            )
        team = team_from_code(code=data.get("team"), user=request.user)
        text_fields = {key: data.get(key) for key in data if not hasattr(data.get(key), "read")}
        form = form_class({**text_fields, "team": team.pk if team else ""}, request.FILES, user=request.user)
        if not form.is_valid():
            raise form_errors(form)
        try:
            created = create(form.cleaned_data)
        except DuplicateUpload as duplicate:
            return api_error(
                f"{duplicate.message} Its code is {duplicate.existing.code}.", status=409, code="duplicate"
            )
        except LibraryError as exc:
            return refusal(exc)
        return Response(data_of(created, request=request), status=status.HTTP_202_ACCEPTED)
