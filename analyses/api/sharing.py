"""API: shares (read-only access for a user or a team) and share links, through the sharing
services and selectors — the same rules and the same words as the "Access" panel of a page.

A share link's token is in the 201 answer that makes it (with the link's absolute URL), and
never again: only its SHA-256 is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import team_get_for_user
from analyses.api.common import TeamRefSerializer, UserRefSerializer, team_ref, user_ref
from analyses.compare.selectors import comparison_get_for_user
from analyses.library.selectors import classifier_get_for_user, video_get_for_user
from analyses.runs.selectors import analysis_get_for_user
from analyses.sharing import selectors
from analyses.sharing import services as sharing
from analyses.sharing.models import Share, ShareLink, ShareRole
from analyses.sharing.services import LINK_DEFAULT_DAYS, LINK_MAX_DAYS, Shareable, SharingError
from gradcam_site.api import api_error, error_responses, message_serializer

SHARE_TARGET_TYPES = ("analysis", "classifier", "video")
LINK_TARGET_TYPES = ("analysis", "comparison")
_GETTERS: dict[str, Callable[..., Shareable]] = {
    "analysis": analysis_get_for_user,
    "classifier": classifier_get_for_user,
    "video": video_get_for_user,
}
_DAYS_WORDS = f"A share link expires after 1 to {LINK_MAX_DAYS} days."


class TargetRefSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["analysis", "classifier", "video", "comparison"])
    code = serializers.UUIDField()
    name = serializers.CharField()


def target_ref(target: Any) -> dict[str, Any]:
    return {"type": target._meta.model_name, "code": target.code, "name": str(target)}


# --------------------------------------------------------------------------- shares
class ShareSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    target = TargetRefSerializer()
    user = UserRefSerializer(allow_null=True, help_text="The user it is shared with (or null)")
    team = TeamRefSerializer(allow_null=True, help_text="The team it is shared with (or null)")
    role = serializers.ChoiceField(choices=ShareRole.choices, help_text="A share is always read-only")
    created_by = UserRefSerializer()
    created_at = serializers.DateTimeField()
    can_revoke = serializers.BooleanField(help_text="Whether you may revoke it")


def share_data(share: Share, *, request: Request) -> dict[str, Any]:
    return {
        "code": share.code,
        "target": target_ref(share.target),
        "user": user_ref(share.user),
        "team": team_ref(share.team),
        "role": share.role,
        "created_by": user_ref(share.created_by),
        "created_at": share.created_at,
        "can_revoke": sharing.may_revoke(user=request.user, share=share),
    }


class ShareCreateSerializer(serializers.Serializer):
    target_type = serializers.ChoiceField(choices=SHARE_TARGET_TYPES)
    target = serializers.UUIDField(help_text="The code of the analysis, model or video")
    username = serializers.CharField(
        required=False, allow_blank=True, max_length=150, help_text="Share with this user…"
    )
    team = serializers.UUIDField(required=False, allow_null=True, help_text="…or with this team of yours")
    with_inputs = serializers.BooleanField(
        default=False,
        help_text="For an analysis: also share its model and video when the recipient cannot see them",
    )


class SharesMadeSerializer(serializers.Serializer):
    message = serializers.CharField()
    shares = ShareSerializer(many=True, help_text="The shares made (empty when all existed already)")


class ShareList(GenericAPIView):
    parser_classes = [JSONParser, FormParser]
    queryset = Share.objects.none()  # for the schema's model name; reads use the selector

    @extend_schema(
        operation_id="shares_list",
        responses={200: ShareSerializer(many=True), **error_responses(401, 403)},
        description="Shares on objects you may manage, the ones you made, and the ones made for you "
        "or a team of yours.",
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.shares_listed_for(user=request.user)) or []
        return self.get_paginated_response([share_data(share, request=request) for share in page])

    @extend_schema(
        operation_id="shares_create",
        request=ShareCreateSerializer,
        responses={
            201: SharesMadeSerializer,
            200: SharesMadeSerializer,
            **error_responses(400, 401, 403, 404),
        },
        description="Share an object read-only with a user (`username`) or a team (`team`). 201 with "
        "the shares made; 200 with none when it was shared with them already. Only its owner, or an "
        "owner of its team, may share it (403 otherwise).",
    )
    def post(self, request: Request) -> Response:
        body = ShareCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        target = _GETTERS[values["target_type"]](code=values["target"], user=request.user, for_write=True)
        team = None
        if values.get("team"):
            try:
                team = team_get_for_user(code=values["team"], user=request.user)
            except Http404:
                words = "You can share only with a team you belong to."
                return api_error(words, status=400, code="invalid", fields={"team": [words]})
        try:
            made = sharing.share_create(
                actor=request.user,
                target=target,
                username=values.get("username") or "",
                team=team,
                with_inputs=values["with_inputs"],
            )
        except SharingError as exc:
            return api_error(str(exc), status=400, code="invalid")
        names = ", ".join(sorted({share.recipient_name for share in made}))
        return Response(
            {
                "message": f"Shared read-only with {names}." if made else "It was shared with them already.",
                "shares": [share_data(share, request=request) for share in made],
            },
            status=status.HTTP_201_CREATED if made else status.HTTP_200_OK,
        )


class ShareDetail(APIView):
    @extend_schema(
        operation_id="shares_retrieve", responses={200: ShareSerializer, **error_responses(401, 404)}
    )
    def get(self, request: Request, code: str) -> Response:
        share = selectors.share_get_for_user(code=code, user=request.user)
        return Response(share_data(share, request=request))

    @extend_schema(
        operation_id="shares_destroy",
        responses={200: message_serializer("ShareRevokedMessage"), **error_responses(401, 403, 404)},
        description="Revoke the share: whoever received it no longer sees the object through it.",
    )
    def delete(self, request: Request, code: str) -> Response:
        share = selectors.share_get_for_user(code=code, user=request.user)
        try:
            sharing.share_revoke(actor=request.user, share=share)
        except SharingError as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(
            {"message": "Share revoked: they no longer see it (unless another share or a team gives it)."}
        )


# --------------------------------------------------------------------------- share links
class ShareLinkSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    target = TargetRefSerializer()
    label = serializers.CharField()
    state = serializers.ChoiceField(choices=["live", "expired", "revoked"])
    created_by = UserRefSerializer()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_by = UserRefSerializer(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    use_count = serializers.IntegerField()


class ShareLinkCreatedSerializer(ShareLinkSerializer):
    token = serializers.CharField(help_text="The link's secret: shown in this answer only, never again")
    url = serializers.URLField(help_text="The page the link opens (it holds the token)")


def share_link_data(link: ShareLink) -> dict[str, Any]:
    state = "revoked" if link.revoked_at else ("expired" if link.expires_at <= timezone.now() else "live")
    return {
        "code": link.code,
        "target": target_ref(link.target),
        "label": link.label,
        "state": state,
        "created_by": user_ref(link.created_by),
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "revoked_at": link.revoked_at,
        "revoked_by": user_ref(link.revoked_by),
        "last_used_at": link.last_used_at,
        "use_count": link.use_count,
    }


class ShareLinkCreateSerializer(serializers.Serializer):
    target_type = serializers.ChoiceField(choices=LINK_TARGET_TYPES)
    target = serializers.UUIDField(help_text="The code of the finished analysis, or of your saved comparison")
    days = serializers.IntegerField(
        required=False,
        default=LINK_DEFAULT_DAYS,
        min_value=1,
        max_value=LINK_MAX_DAYS,
        help_text="Days until it expires",
        error_messages={
            "min_value": _DAYS_WORDS,
            "max_value": _DAYS_WORDS,
            "invalid": "The expiry is a whole number of days.",
            "max_string_length": "The expiry is a whole number of days.",
        },
    )
    label = serializers.CharField(required=False, allow_blank=True, max_length=100)


def _link_target(*, kind: str, code: Any, user: Any) -> Any:
    """The analysis (which the user must be allowed to change: 403 otherwise) or the saved
    comparison (which only its owner shares by link, as only its owner sees the page's panel)."""
    if kind == "analysis":
        return analysis_get_for_user(code=code, user=user, for_write=True)
    comparison = comparison_get_for_user(code=code, user=user).comparison
    if comparison.owner_id != user.pk:
        raise PermissionDenied("Only the owner of a comparison can make a share link to it.")
    return comparison


class ShareLinkList(GenericAPIView):
    parser_classes = [JSONParser, FormParser]
    queryset = ShareLink.objects.none()  # for the schema's model name; reads use the selector

    @extend_schema(
        operation_id="share_links_list",
        parameters=[
            OpenApiParameter(
                "state", str, enum=["live", "expired", "revoked"], description="Only links in this state"
            )
        ],
        responses={200: ShareLinkSerializer(many=True), **error_responses(401, 403)},
        description="Links you made, and links on analyses you may share or on comparisons you own. "
        "Their tokens are never shown again.",
    )
    def get(self, request: Request) -> Response:
        links = selectors.share_links_listed_for(user=request.user)
        wanted, now = request.query_params.get("state"), timezone.now()
        if wanted == "revoked":
            links = links.filter(revoked_at__isnull=False)
        elif wanted == "expired":
            links = links.filter(revoked_at__isnull=True, expires_at__lte=now)
        elif wanted == "live":
            links = links.filter(revoked_at__isnull=True, expires_at__gt=now)
        page = self.paginate_queryset(links) or []
        return self.get_paginated_response([share_link_data(link) for link in page])

    @extend_schema(
        operation_id="share_links_create",
        request=ShareLinkCreateSerializer,
        responses={201: ShareLinkCreatedSerializer, **error_responses(400, 401, 403, 404)},
        description="A link that shows a finished analysis, or a saved comparison, to anyone holding "
        "it, read-only, until it expires or is revoked. The answer holds its `token` and `url`: "
        "they are shown this once.",
    )
    def post(self, request: Request) -> Response:
        body = ShareLinkCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        target = _link_target(kind=values["target_type"], code=values["target"], user=request.user)
        try:
            link, token = sharing.share_link_create(
                actor=request.user, target=target, days=values["days"], label=values.get("label") or ""
            )
        except SharingError as exc:
            return api_error(str(exc), status=400, code="invalid")
        url = request.build_absolute_uri(reverse("sharing:link_page", kwargs={"token": token}))
        response = Response(
            {**share_link_data(link), "token": token, "url": url}, status=status.HTTP_201_CREATED
        )
        response["Cache-Control"] = "no-store"  # the token is shown this once
        return response


class ShareLinkDetail(APIView):
    @extend_schema(
        operation_id="share_links_retrieve", responses={200: ShareLinkSerializer, **error_responses(401, 404)}
    )
    def get(self, request: Request, code: str) -> Response:
        link = selectors.share_link_get_for_user(code=code, user=request.user)
        return Response(share_link_data(link))

    @extend_schema(
        operation_id="share_links_destroy",
        responses={200: message_serializer("ShareLinkRevokedMessage"), **error_responses(401, 403, 404)},
        description="Revoke the link: it no longer opens anything (it stays listed, as revoked).",
    )
    def delete(self, request: Request, code: str) -> Response:
        link = selectors.share_link_get_for_user(code=code, user=request.user)
        try:
            sharing.share_link_revoke(actor=request.user, link=link)
        except SharingError as exc:
            raise PermissionDenied(str(exc)) from None
        return Response({"message": "Share link revoked: it no longer opens anything."})


share_list_view = ShareList.as_view()
share_detail_view = ShareDetail.as_view()
share_link_list_view = ShareLinkList.as_view()
share_link_detail_view = ShareLinkDetail.as_view()
