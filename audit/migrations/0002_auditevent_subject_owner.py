"""Each audit event names whose object it is about (`subject_owner`, and the username then), so
the audit page's "events on my objects" is one indexed filter that still works after the
object is deleted; indexes for the page's scopes.

The append-only triggers are lifted for this migration only: on SQLite, adding a column with a
default rebuilds the table (which would lose the triggers), and the backfill of the existing
events (from the targets that still exist) is an UPDATE, which they refuse. They are created
again at the end, in the same transaction on PostgreSQL, so no row is ever writable outside it.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

from audit.triggers import audit_triggers_create, audit_triggers_drop

# target_type -> (app label, model) of the audited objects that have an owner.
_OWNED_TARGETS = {
    "analysis": ("analyses", "Analysis"),
    "classifier": ("analyses", "Classifier"),
    "video": ("analyses", "Video"),
}


def drop_triggers(apps, schema_editor):
    audit_triggers_drop(connection=schema_editor.connection)


def create_triggers(apps, schema_editor):
    audit_triggers_create(connection=schema_editor.connection)


def backfill_subject_owners(apps, schema_editor):
    """Events on objects that still exist get their owner; events on deleted ones stay without."""
    if schema_editor.connection.vendor == "postgresql":
        # The foreign key checks are deferred by default; run them now, so no trigger events are
        # pending when the append-only triggers are re-created.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    audit_event = apps.get_model("audit", "AuditEvent")
    user = apps.get_model(settings.AUTH_USER_MODEL)
    for target_type, (app_label, model_name) in _OWNED_TARGETS.items():
        owned = apps.get_model(app_label, model_name)
        owners = owned.objects.filter(code=OuterRef("target_code")).values("owner_id")[:1]
        audit_event.objects.filter(target_type=target_type, subject_owner__isnull=True).update(
            subject_owner_id=Subquery(owners)
        )
    usernames = user.objects.filter(pk=OuterRef("subject_owner_id")).values("username")[:1]
    audit_event.objects.filter(subject_owner__isnull=False).update(subject_owner_username=Subquery(usernames))


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("analyses", "0006_history_columns_filled"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(drop_triggers, create_triggers),
        migrations.AddField(
            model_name="auditevent",
            name="subject_owner",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="subject_owner_username",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="The username of the target's owner when the event was recorded",
                max_length=150,
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor", "-created_at"], name="audit_actor_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["subject_owner", "-created_at"], name="audit_subject_owner_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["team", "-created_at"], name="audit_team_created"),
        ),
        migrations.RunPython(backfill_subject_owners, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
