"""What the API's resources share: references to users and teams, library-error translation,
the upload size limits installed before DRF parses a multipart body."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from accounts.models import Team
from accounts.selectors import team_get_for_user


class UserRefSerializer(serializers.Serializer):
    username = serializers.CharField(read_only=True)


class TeamRefSerializer(serializers.Serializer):
    code = serializers.UUIDField(read_only=True)
    name = serializers.CharField(read_only=True)


def team_ref(team: Team | None) -> dict[str, Any] | None:
    return {"code": team.code, "name": team.name} if team is not None else None


def user_ref(user: Any) -> dict[str, Any] | None:
    return {"username": user.get_username()} if user is not None else None


def team_from_code(*, code: Any, user: Any, field: str = "team") -> Team | None:
    """The team with this code among the user's teams; an invalid field error otherwise (the
    same words whether it does not exist or the user is not in it)."""
    if code in (None, ""):
        return None
    try:
        return team_get_for_user(code=str(code)[:64], user=user)
    except Http404:
        raise ValidationError({field: ["You can choose only a team you belong to."]}) from None


def refuse(message: str, *, field: str = "non_field_errors") -> ValidationError:
    return ValidationError({field: [message]})


def form_errors(form: Any) -> ValidationError:
    """A Django form's errors (the pages' words) as an API validation error."""
    return ValidationError(
        {
            ("non_field_errors" if name == "__all__" else name): list(errors)
            for name, errors in form.errors.items()
        }
    )


def request_user(request: Request) -> Any:
    return request.user
