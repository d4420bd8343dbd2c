from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail: a leaf app that imports only Django and the settings."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "audit"
