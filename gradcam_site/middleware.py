"""Request guards that must act before any view or other middleware sees the request.

- `RequestBodyLimitMiddleware` (first in MIDDLEWARE) refuses a body larger than
  GRADCAM_MAX_REQUEST_BODY_BYTES, judged by its Content-Length, before anything parses it: the
  CSRF middleware reads request.POST of every POST, and Django streams file parts to a temporary
  file while doing so. Views marked `@large_upload_view` are exempt: they install their own
  size-capping upload handler.
- `UploadViewsOnlyFileHandler` (first in FILE_UPLOAD_HANDLERS) drops every file part posted to
  a view that is not an upload view, so no other URL ever writes an uploaded file anywhere.
- `ContentSecurityPolicyMiddleware` sets the Content-Security-Policy header.
- `client_ip` is the client's address, trusting a proxy header only when configured to.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import Resolver404, resolve
from django.utils.html import escape

_LARGE_UPLOAD_MARK = "accepts_large_upload"
ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


def large_upload_view(view: ViewFunc) -> ViewFunc:
    """Mark a view that takes bodies over GRADCAM_MAX_REQUEST_BODY_BYTES and file parts.

    Only for views that cap their uploads themselves (an upload handler with their own limits),
    since the request-wide limit no longer protects them. Put it outermost.
    """
    setattr(view, _LARGE_UPLOAD_MARK, True)
    return view


def _is_large_upload_view(request: HttpRequest) -> bool:
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return bool(getattr(match.func, _LARGE_UPLOAD_MARK, False))


def _declared_length(request: HttpRequest) -> int | None:
    """The Content-Length, or None without one. Django reads no body without it (WSGI)."""
    raw = request.META.get("CONTENT_LENGTH", "")
    if not str(raw).strip():
        return None
    try:
        return max(0, int(raw))
    except ValueError:  # also raised for more than 4300 digits
        return -1


_REFUSAL_CODES = {400: "bad_request", 411: "length_required", 413: "too_large"}


def _refusal(request: HttpRequest, *, status: int, title: str, message: str) -> HttpResponse:
    accept = request.headers.get("Accept", "")
    if request.path_info.startswith("/api/"):
        # The API's one error shape (gradcam_site.api), also for what is refused before a view.
        body = {"error": {"status": status, "code": _REFUSAL_CODES.get(status, "error"), "message": message}}
        return HttpResponse(json.dumps(body), status=status, content_type="application/json")
    if "application/json" in accept and "text/html" not in accept:  # the pages' own scripts
        return HttpResponse(json.dumps({"error": message}), status=status, content_type="application/json")
    page = f'<!doctype html><html lang="en"><title>{escape(title)}</title><h1>{escape(title)}</h1><p>{escape(message)}</p></html>'
    return HttpResponse(page, status=status, content_type="text/html; charset=utf-8")


def body_refusal(request: HttpRequest, *, limit: int) -> HttpResponse | None:
    """A 413/411/400 answer for a body this URL must not read, or None when it may be read."""
    length = _declared_length(request)
    shown_limit = filesizeformat(limit)
    if length is None:
        if "HTTP_TRANSFER_ENCODING" not in request.META:
            return None
        # A body of unknown length (chunked) cannot be judged before it is read, and Django
        # would ignore it anyway: say so instead of answering as if nothing had been sent.
        return _refusal(
            request,
            status=411,
            title="Length required",
            message=f"This request sends a body without a Content-Length. Send its size; this page accepts at most {shown_limit}.",
        )
    if length < 0:
        return _refusal(
            request, status=400, title="Bad request", message="The Content-Length header is not a number."
        )
    if length > limit:
        return _refusal(
            request,
            status=413,
            title="Request too large",
            message=f"This request is {filesizeformat(length)}; this page accepts at most {shown_limit}. "
            "Models and videos are uploaded on the Classifiers and Videos pages.",
        )
    return None


class RequestBodyLimitMiddleware:
    """First in MIDDLEWARE: nothing before it may read the body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        large_upload = _is_large_upload_view(request)
        setattr(request, _LARGE_UPLOAD_MARK, large_upload)
        if not large_upload:
            refusal = body_refusal(request, limit=settings.GRADCAM_MAX_REQUEST_BODY_BYTES)
            if refusal is not None:
                return refusal
        return self.get_response(request)


class UploadViewsOnlyFileHandler(FileUploadHandler):
    """Drops file parts unless RequestBodyLimitMiddleware found a `@large_upload_view`.

    A request that never went through the middleware counts as "not an upload view".
    """

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if not getattr(self.request, _LARGE_UPLOAD_MARK, False):
            raise SkipFile()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        return raw_data  # an upload view: the next handler stores it

    def file_complete(self, file_size: int) -> None:
        return None


class ContentSecurityPolicyMiddleware:
    """Sets CONTENT_SECURITY_POLICY (when not empty) on every response that has none."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        # Django's technical error pages (DEBUG only) are built with inline styles and scripts.
        debug_page = settings.DEBUG and response.status_code >= 400
        if policy and not debug_page and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response


def client_ip(request: HttpRequest) -> str:
    """The client's address, for throttling (AXES_CLIENT_IP_CALLABLE and our own limits).

    REMOTE_ADDR, unless GRADCAM_CLIENT_IP_HEADER names a header that the proxies in front of
    the site set. Each proxy appends the address it received the request from, so with
    GRADCAM_TRUSTED_PROXY_COUNT proxies the entry that many places from the right is the
    client as our outermost proxy saw it; anything left of it was written by the client.
    """
    remote = str(request.META.get("REMOTE_ADDR", ""))
    header = settings.GRADCAM_CLIENT_IP_HEADER
    if not header:
        return remote
    hops = [hop.strip() for hop in str(request.META.get(header, "")).split(",") if hop.strip()]
    count = settings.GRADCAM_TRUSTED_PROXY_COUNT
    if len(hops) < count:
        return remote  # the request did not come through all of our proxies
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote
