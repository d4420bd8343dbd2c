"""URLs of the audit trail's API, mounted under /api/v1/ (read-only)."""

from django.urls import path

from audit import api

urlpatterns = [
    path("audit-events/", api.audit_event_list_view, name="api_audit_events"),
]
