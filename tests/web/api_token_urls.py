"""Test-only URLs: the site's own, plus one tiny DRF view that authenticates with personal API
tokens only, so `ApiTokenAuthentication` is exercised over real HTTP before (and whatever)
the REST API's settings are."""

from __future__ import annotations

from typing import Any

from django.urls import include, path
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication

WHOAMI_PATH = "/test-api/whoami/"


class WhoAmI(APIView):
    authentication_classes: list[type[BaseAuthentication]] = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]

    def get(self, request: Request) -> Response:
        token: Any = request.auth
        return Response({"username": request.user.get_username(), "token_code": str(token.code)})


urlpatterns = [
    path(WHOAMI_PATH.strip("/") + "/", WhoAmI.as_view()),
    path("", include("gradcam_site.urls")),
]
