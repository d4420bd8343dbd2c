"""AuditEvent moves from the analyses app to this one, its table unchanged.

Only Django's state changes: the table keeps its name (`analyses_auditevent`), its rows and the
append-only triggers that analyses migration 0002 created on it. analyses 0004 then removes
the model from that app's state. The admin's content type (and so every permission and admin
log entry that names it) follows the model to this app.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_type_to_audit(apps, schema_editor):
    _move_content_type(apps, schema_editor, source="analyses", destination="audit")


def content_type_to_analyses(apps, schema_editor):
    _move_content_type(apps, schema_editor, source="audit", destination="analyses")


def _move_content_type(apps, schema_editor, *, source, destination):
    content_type = apps.get_model("contenttypes", "ContentType")
    using = schema_editor.connection.alias
    if not content_type.objects.using(using).filter(app_label=destination, model="auditevent").exists():
        content_type.objects.using(using).filter(app_label=source, model="auditevent").update(
            app_label=destination
        )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0001_initial"),
        ("analyses", "0003_uploads_processed_by_workers"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("code", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        (
                            "actor_username",
                            models.CharField(
                                blank=True,
                                editable=False,
                                help_text="The actor's username when the event was recorded",
                                max_length=150,
                            ),
                        ),
                        (
                            "action",
                            models.CharField(
                                db_index=True,
                                help_text="Dotted code, e.g. classifier.created",
                                max_length=100,
                            ),
                        ),
                        ("target_type", models.CharField(blank=True, max_length=50)),
                        ("target_code", models.UUIDField(blank=True, db_index=True, null=True)),
                        ("data", models.JSONField(blank=True, default=dict)),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "team",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="accounts.team",
                            ),
                        ),
                    ],
                    options={"ordering": ["-created_at", "-id"], "db_table": "analyses_auditevent"},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to_audit, content_type_to_analyses),
    ]
