from django.apps import AppConfig


class AnalysesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "analyses"

    def ready(self) -> None:
        # Receivers act only inside django-q2 worker processes (post_spawn is sent there):
        # start a warm spare engine, ensure the reaper schedule, reap runs of dead workers.
        from analyses import runner

        runner.connect_worker_signals()
