from django.apps import AppConfig
from django.core import checks


class AnalysesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "analyses"

    def ready(self) -> None:
        # Receivers act only inside django-q2 worker processes (post_spawn is sent there):
        # start a warm spare engine, ensure the reaper schedule, reap runs of dead workers.
        from analyses import reaper
        from analyses.worker import sandbox

        reaper.connect_worker_signals()
        # `check --deploy` says it loudly when uploaded files would be parsed without the sandbox
        # (an error if bubblewrap cannot run, a warning when it is off). It is not an ordinary
        # check: migrate, runserver and shell start no engine child and must work without
        # bubblewrap; the commands and workers that do start one call require_working_sandbox.
        checks.register(sandbox.check_sandbox, checks.Tags.security, deploy=True)
