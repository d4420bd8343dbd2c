"""`manage.py reap_analyses`: fail or re-queue runs whose worker died, re-enqueue lost queued runs, sweep
dead working folders (the scheduler also does this every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from analyses.reaper import reap_everything, reaper_schedule_ensure


class Command(BaseCommand):
    help = (
        "Mark analyses whose worker stopped as failed (or queue them again while attempts remain), "
        "enqueue again queued analyses whose task was lost, and remove working folders of dead workers."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--schedule", action="store_true", help="also make sure the every-minute schedule exists"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["schedule"]:
            reaper_schedule_ensure()
        counts = reap_everything()
        self.stdout.write(", ".join(f"{name}: {count}" for name, count in counts.items()))
