"""API: the audit trail, read-only (`/api/v1/audit-events/`), with the audit page's scoping
(`audit_events_visible_to`) and its filter set (`audit.filters.AuditFilter`), so the page, its
CSV export and the API answer the same question the same way.

Unlike the page, which ignores a filter value it cannot read (and says so beside the field), the
API refuses it with 400 and the form's words: a script must not mistake "everything" for "what I
asked for". The audit app imports no other project app: only DRF and the site's API helpers.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from audit.filters import MAX_ACTION_CHARS, MAX_USERNAME_CHARS, TARGET_TYPE_CHOICES, audit_filter
from audit.models import AuditEvent
from audit.selectors import tombstones_for
from gradcam_site.api import error_responses

FILTER_PARAMETERS = [
    OpenApiParameter(
        "actor", str, description=f"Username of who acted (exact, at most {MAX_USERNAME_CHARS} characters)"
    ),
    OpenApiParameter(
        "action",
        str,
        description="A dotted action code (`analysis.deleted`), or a prefix ending with a dot (`analysis.`); "
        f"at most {MAX_ACTION_CHARS} characters",
    ),
    OpenApiParameter("target_type", str, enum=[value for value, _label in TARGET_TYPE_CHOICES]),
    OpenApiParameter("target", OpenApiTypes.UUID, description="The code of the object the events are about"),
    OpenApiParameter("team", OpenApiTypes.UUID, description="The code of one of your teams"),
    OpenApiParameter("created_after", OpenApiTypes.DATE, description="From this day (inclusive)"),
    OpenApiParameter("created_before", OpenApiTypes.DATE, description="Up to this day (inclusive)"),
]


class AuditActorSerializer(serializers.Serializer):
    username = serializers.CharField(help_text="As it was when the event was recorded")
    active = serializers.BooleanField(help_text="False once the account was deactivated")


class AuditTeamSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    name = serializers.CharField()


class AuditEventSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    action = serializers.CharField(help_text="Dotted code, e.g. `share.created`")
    actor = AuditActorSerializer(allow_null=True, help_text="Null for the system or an anonymous visitor")
    object_owner = serializers.CharField(help_text="The username of the object's owner when it was recorded")
    team = AuditTeamSerializer(allow_null=True)
    target_type = serializers.CharField(help_text="analysis, classifier, video, comparison, team, user…")
    target_code = serializers.UUIDField(allow_null=True)
    target_deleted = serializers.BooleanField(help_text="Whether the object's deletion was recorded since")
    data = serializers.DictField(help_text="What the event recorded (secrets masked)")


def audit_event_data(event: AuditEvent, *, deleted: bool) -> dict[str, Any]:
    return {
        "code": event.code,
        "created_at": event.created_at,
        "action": event.action,
        "actor": {"username": event.actor_username, "active": bool(event.actor.is_active)}
        if event.actor is not None
        else None,
        "object_owner": event.subject_owner_username,
        "team": {"code": event.team.code, "name": event.team.name} if event.team is not None else None,
        "target_type": event.target_type,
        "target_code": event.target_code,
        "target_deleted": deleted,
        "data": event.data if isinstance(event.data, dict) else {"value": event.data},
    }


class AuditEventList(GenericAPIView):
    queryset = AuditEvent.objects.none()  # for the schema's model name; reads use the selector

    @extend_schema(
        operation_id="audit_events_list",
        parameters=FILTER_PARAMETERS,
        responses={200: AuditEventSerializer(many=True), **error_responses(400, 401, 403)},
        description="The events you may read, newest first: what you did, what was done to your "
        "objects, and to the teams you own (staff: every event). Read-only.",
    )
    def get(self, request: Request) -> Response:
        events = audit_filter(data=request.query_params, user=request.user, request=request)
        if not events.is_valid():
            raise ValidationError({name: list(errors) for name, errors in events.form.errors.items()})
        page = list(self.paginate_queryset(events.qs) or [])
        deleted = tombstones_for(target_codes=[event.target_code for event in page])
        return self.get_paginated_response(
            [audit_event_data(event, deleted=event.target_code in deleted) for event in page]
        )


audit_event_list_view = AuditEventList.as_view()
