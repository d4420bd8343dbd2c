"""The streaming size limit of the API's multipart uploads, installed before DRF reads the body.

It cannot wait for the view method: with session authentication, DRF's CSRF check reads
`request.POST` while authenticating, which parses the whole multipart body (Django would write
every file part to a temporary file, whatever its size). `initialize_request` runs first.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from analyses.library.uploads import UploadLimitHandler, install_upload_limit


class UploadLimitMixin:
    """For an APIView whose POST is a multipart upload: `upload_limits()` gives each file
    field's limit; `self.upload_limit.refusal` then says whether (and why) one was over it."""

    upload_kind = "file"
    upload_limit: UploadLimitHandler | None = None

    def upload_limits(self) -> dict[str, int]:
        raise NotImplementedError

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Request:
        if request.method == "POST":
            self.upload_limit = install_upload_limit(
                request, file_limits=self.upload_limits(), kind=self.upload_kind
            )
        return super().initialize_request(request, *args, **kwargs)  # type: ignore[misc]
