"""API: the current user, and teams with their members, through the accounts selectors and
services (the team pages' rules and words). Accounts never imports analyses."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import Throttled
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.forms import TeamCreateForm, TeamMemberAddForm
from accounts.models import Team, TeamRole
from accounts.selectors import (
    team_get_for_user,
    team_member_get,
    team_memberships,
    teams_of,
    user_is_team_owner,
)
from gradcam_site.api import error_responses, message_serializer

# services.throttle_hit counts attempts per hour: the longest a refused caller waits.
THROTTLE_WINDOW_SECONDS = 3600


class MeTeamSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=TeamRole.choices)


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


# --------------------------------------------------------------------------- teams
def _refusal(error: ValidationError) -> DrfValidationError:
    """A service's refusal (a Django ValidationError) in the API's shape, with its words."""
    if hasattr(error, "error_dict"):
        return DrfValidationError({name: list(words) for name, words in error.message_dict.items()})
    return DrfValidationError({"non_field_errors": list(error.messages)})


class TeamSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    created_at = serializers.DateTimeField()
    my_role = serializers.ChoiceField(choices=TeamRole.choices, help_text="Your role in it")
    member_count = serializers.IntegerField()
    url = serializers.CharField()


class MemberUserSerializer(serializers.Serializer):
    code = serializers.UUIDField(help_text="Names the member in /teams/{code}/members/{user_code}/")
    username = serializers.CharField()


class MemberSerializer(serializers.Serializer):
    user = MemberUserSerializer()
    role = serializers.ChoiceField(choices=TeamRole.choices)
    added_by = serializers.CharField(allow_null=True, help_text="Username of who added them")
    joined_at = serializers.DateTimeField()


class TeamDetailSerializer(TeamSerializer):
    members = MemberSerializer(many=True, help_text="Owners first, then by username")


def team_data(team: Team, *, request: Request) -> dict[str, Any]:
    """A team with its members (the caller already checked the user is one of them)."""
    memberships = list(team_memberships(team=team))
    mine = next((m for m in memberships if m.user_id == request.user.pk), None)
    return {
        "code": team.code,
        "name": team.name,
        "description": team.description,
        "created_at": team.created_at,
        "my_role": mine.role if mine is not None else "",
        "member_count": len(memberships),
        "url": request.build_absolute_uri(f"/api/v1/teams/{team.code}/"),
        "members": [
            {
                "user": {"code": m.user.code, "username": m.user.get_username()},
                "role": m.role,
                "added_by": m.added_by.get_username() if m.added_by is not None else None,
                "joined_at": m.created_at,
            }
            for m in memberships
        ],
    }


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class TeamList(GenericAPIView):
    parser_classes = [JSONParser, FormParser]
    queryset = Team.objects.none()  # for the schema's model name; reads use the selector

    @extend_schema(
        operation_id="teams_list",
        responses={200: TeamSerializer(many=True), **error_responses(401, 403)},
        description="The teams you belong to.",
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(teams_of(user=request.user)) or []
        return self.get_paginated_response(
            [
                {
                    "code": team.code,
                    "name": team.name,
                    "description": team.description,
                    "created_at": team.created_at,
                    "my_role": getattr(team, "my_role", ""),
                    "member_count": getattr(team, "member_count", 0),
                    "url": request.build_absolute_uri(f"/api/v1/teams/{team.code}/"),
                }
                for team in page
            ]
        )

    @extend_schema(
        operation_id="teams_create",
        request=TeamCreateSerializer,
        responses={201: TeamDetailSerializer, **error_responses(400, 401, 403)},
        description="Create a team: you are its owner.",
    )
    def post(self, request: Request) -> Response:
        body = TeamCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        form = TeamCreateForm(
            {"name": body.validated_data["name"], "description": body.validated_data.get("description", "")}
        )
        if not form.is_valid():
            raise DrfValidationError({name: list(words) for name, words in form.errors.items()})
        try:
            team = services.team_create(
                creator=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data.get("description") or "",
            )
        except ValidationError as error:
            raise _refusal(error) from None
        return Response(team_data(team, request=request), status=status.HTTP_201_CREATED)


class TeamDetail(APIView):
    @extend_schema(
        operation_id="teams_retrieve",
        responses={200: TeamDetailSerializer, **error_responses(401, 404)},
        description="A team of yours with its members and their roles (404 for anyone else).",
    )
    def get(self, request: Request, code: str) -> Response:
        team = team_get_for_user(code=code, user=request.user)
        return Response(team_data(team, request=request))


class MemberAddSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(
        choices=TeamRole.choices,
        default=TeamRole.MEMBER,
        error_messages={"invalid_choice": "Unknown role “{input}”: choose owner or member."},
    )


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=TeamRole.choices,
        error_messages={"invalid_choice": "Unknown role “{input}”: choose owner or member."},
    )


class TeamMembers(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        operation_id="teams_members_create",
        request=MemberAddSerializer,
        responses={201: TeamDetailSerializer, **error_responses(400, 401, 403, 404, 429)},
        description="Add a user by username (team owners only).",
    )
    def post(self, request: Request, code: str) -> Response:
        team = team_get_for_user(code=code, user=request.user)
        if not user_is_team_owner(user=request.user, team=team):
            # Checked before the body, as on the page: a member learns "not allowed", not "username required".
            raise PermissionDenied("Only team owners can add members.")
        body = MemberAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        form = TeamMemberAddForm(body.validated_data)
        if not form.is_valid():
            raise DrfValidationError({name: list(words) for name, words in form.errors.items()})
        try:
            services.team_member_add(
                actor=request.user,
                team=team,
                username=form.cleaned_data["username"],
                role=form.cleaned_data["role"],
            )
        except services.Throttled as refusal:
            raise Throttled(wait=THROTTLE_WINDOW_SECONDS, detail=str(refusal)) from None
        except ValidationError as error:
            raise _refusal(error) from None
        return Response(team_data(team, request=request), status=status.HTTP_201_CREATED)


class TeamMember(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        operation_id="teams_members_partial_update",
        request=MemberRoleSerializer,
        responses={200: TeamDetailSerializer, **error_responses(400, 401, 403, 404)},
        description="Change a member's role (team owners only; a team keeps at least one owner).",
    )
    def patch(self, request: Request, code: str, user_code: str) -> Response:
        team = team_get_for_user(code=code, user=request.user)
        membership = team_member_get(team=team, user_code=user_code)
        if not user_is_team_owner(user=request.user, team=team):
            raise PermissionDenied("Only team owners can manage members.")
        body = MemberRoleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.team_member_set_role(
                actor=request.user, team=team, user=membership.user, role=body.validated_data["role"]
            )
        except ValidationError as error:
            raise _refusal(error) from None
        return Response(team_data(team, request=request))

    @extend_schema(
        operation_id="teams_members_destroy",
        responses={200: message_serializer("MemberRemovedMessage"), **error_responses(400, 401, 403, 404)},
        description="Remove a member (team owners), or yourself (leaving). The last owner can do neither.",
    )
    def delete(self, request: Request, code: str, user_code: str) -> Response:
        team = team_get_for_user(code=code, user=request.user)
        membership = team_member_get(team=team, user_code=user_code)
        try:
            services.team_member_remove(actor=request.user, team=team, user=membership.user)
        except ValidationError as error:
            raise _refusal(error) from None
        if membership.user_id == request.user.pk:
            return Response({"message": f"You left {team.name}."})
        return Response({"message": f"{membership.user.get_username()} removed from {team.name}."})


class TeamLeave(APIView):
    @extend_schema(
        operation_id="teams_leave",
        request=None,
        responses={200: message_serializer("TeamLeftMessage"), **error_responses(400, 401, 404)},
        description="Leave the team (its last owner must make someone else an owner first).",
    )
    def post(self, request: Request, code: str) -> Response:
        team = team_get_for_user(code=code, user=request.user)
        try:
            services.team_leave(user=request.user, team=team)
        except ValidationError as error:
            raise _refusal(error) from None
        return Response({"message": f"You left {team.name}."})
