"""The audit trail becomes append-only in the database, not only in the ORM.

- `actor_username` keeps who acted, backfilled from the actor's current username.
- The actor and team keys PROTECT: deleting a user or team may no longer rewrite its events.
- Triggers refuse UPDATE and DELETE of audit rows (and TRUNCATE on PostgreSQL); their SQL
  lives in audit.triggers. They are created last: the backfill above is an UPDATE.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

from audit.triggers import audit_triggers_create, audit_triggers_drop


def backfill_actor_usernames(apps, schema_editor):
    audit_event = apps.get_model("analyses", "AuditEvent")
    user = apps.get_model(settings.AUTH_USER_MODEL)
    usernames = user.objects.filter(pk=OuterRef("actor_id")).values("username")[:1]
    audit_event.objects.filter(actor__isnull=False).update(actor_username=Subquery(usernames))


def create_triggers(apps, schema_editor):
    audit_triggers_create(connection=schema_editor.connection)


def drop_triggers(apps, schema_editor):
    audit_triggers_drop(connection=schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("analyses", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="actor_username",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="The actor's username when the event was recorded",
                max_length=150,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="team",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.team",
            ),
        ),
        migrations.RunPython(backfill_actor_usernames, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
