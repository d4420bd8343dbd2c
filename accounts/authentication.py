"""DRF authentication with personal API tokens (`accounts.tokens`).

Scripts send `Authorization: Bearer gcs_…` (or `Token gcs_…`, what DRF's own TokenAuthentication
and many clients use). A request without such a header is left to the other authentication
classes (the browser's session); one with a token that does not work is refused with 401 and
a sentence saying why, never served as anonymous.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.models import ApiToken
from accounts.tokens import MAX_SECRET_CHARS, ApiTokenRefused, api_token_verify

KEYWORDS = ("bearer", "token")
# "Bearer " + a secret, with room for stray spaces; longer is not a token of ours and is refused
# before it is split or hashed.
MAX_HEADER_CHARS = len("Bearer ") + MAX_SECRET_CHARS + 16


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not isinstance(header, str) or not header:
            return None
        scheme = header[: header.find(" ")] if " " in header else header
        if scheme.lower() not in KEYWORDS:
            return None  # Basic, or anything else: not ours to judge
        if len(header) > MAX_HEADER_CHARS:
            raise AuthenticationFailed("The Authorization header is too long to hold an API token.")
        parts = header.split()
        if len(parts) != 2:
            raise AuthenticationFailed(
                "Invalid Authorization header: send “Bearer” and the API token, separated by one space."
            )
        try:
            token = api_token_verify(parts[1])
        except ApiTokenRefused as refusal:
            raise AuthenticationFailed(str(refusal)) from None
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # A WWW-Authenticate value makes DRF answer 401 (not 403) to unauthenticated requests.
        return "Bearer"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes personal API tokens (registered by being defined)."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "gcs_<secret>",
            "description": "A personal API token, made on the account page (Authorization: Bearer gcs_...).",
        }
