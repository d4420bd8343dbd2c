"""API: the current user (accounts never imports analyses)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import teams_of
from gradcam_site.api import error_responses


class MeTeamSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=["owner", "member"])


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField()
    is_staff = serializers.BooleanField()
    teams = MeTeamSerializer(many=True)


class Me(APIView):
    @extend_schema(operation_id="me_retrieve", responses={200: MeSerializer, **error_responses(401)})
    def get(self, request: Request) -> Response:
        user = request.user
        teams = [
            {"code": team.code, "name": team.name, "role": getattr(team, "my_role", "")}
            for team in teams_of(user=user)
        ]
        return Response(
            {"username": user.get_username(), "email": user.email, "is_staff": user.is_staff, "teams": teams}
        )
