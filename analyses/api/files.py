"""What the API's file downloads share: answering whatever the client's Accept header says (a
file is a file; DRF would otherwise refuse `Accept: video/mp4` with 406 before the view runs),
and their schema entries (binary bodies, Range answers, the object store's redirect)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework.negotiation import BaseContentNegotiation

from gradcam_site.api import error_responses


class FileNegotiation(BaseContentNegotiation):
    """The first renderer (JSON, for errors), whatever the client accepts: the view answers
    with the file itself, or with an error in the API's one shape."""

    def select_parser(self, request: Any, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> Any:
        return (renderers[0], renderers[0].media_type)


def binary_responses(
    media_types: str | tuple[str, ...], description: str, *, ranges: bool = True
) -> dict[Any, Any]:
    """Schema responses of a download: the file (200), a byte range of it (206) and the errors;
    `media_types` lists every type the file may be served as."""
    kinds = (media_types,) if isinstance(media_types, str) else media_types
    responses: dict[Any, Any] = {}
    for media_type in kinds:
        # A JSON file (the manifest) is described as the object it is; everything else as bytes.
        body = OpenApiTypes.OBJECT if media_type == "application/json" else OpenApiTypes.BINARY
        responses[(200, media_type)] = OpenApiResponse(body, description=description)
        if ranges:
            responses[(206, media_type)] = OpenApiResponse(
                OpenApiTypes.BINARY, description="A byte range of it"
            )
    # With the media store in a bucket and MEDIA_DELIVERY=presigned, the file itself is not sent
    # by the API server (analyses.files.private_file_response): clients must follow redirects.
    responses[302] = OpenApiResponse(
        description="A redirect to a short-lived presigned address of the file in the object store "
        "(MEDIA_DELIVERY=presigned), which answers Range requests itself"
    )
    return {**responses, **error_responses(401, 404, *((416,) if ranges else ()))}
