"""AuditEvent now belongs to the audit app (audit 0001): remove it from this app's state only.

The table `analyses_auditevent`, its rows and its append-only triggers stay as they are.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("analyses", "0003_uploads_processed_by_workers"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEvent")],
            database_operations=[],
        ),
    ]
