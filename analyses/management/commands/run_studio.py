"""`manage.py run_studio`: the web server and one django-q2 cluster, as child processes.

Prints the URL and the demo login, stops both on Ctrl-C / SIGTERM, and exits non-zero as soon
as either of them dies on its own (a studio without its worker would queue analyses forever).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analyses.management.sandbox_required import require_sandbox_for_command

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password-3d"
_STOP_GRACE_SECONDS = 10.0


class Command(BaseCommand):
    help = "Run the web server and the analysis worker cluster together (Ctrl-C stops both)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: Any, **options: Any) -> None:
        from analyses.reaper import reap_everything, reaper_schedule_ensure

        require_sandbox_for_command()
        reaper_schedule_ensure()
        reap_everything()
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        address = f"{options['host']}:{options['port']}"
        children = {
            "web server": subprocess.Popen([sys.executable, manage, "runserver", "--noreload", address]),
            "worker cluster": subprocess.Popen([sys.executable, manage, "qcluster"]),
        }
        stop_requested: list[int] = []

        def request_stop(signum: int, frame: Any) -> None:
            stop_requested.append(signum)

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        host = options["host"]
        shown_host = f"[{host}]" if ":" in host else host
        self.stdout.write(
            f"3D Grad-CAM Studio: http://{shown_host}:{options['port']}/\n"
            f"Demo login: user {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}\n"
            "Press Ctrl-C to stop the web server and the worker."
        )
        died = ""
        while not stop_requested and not died:
            for name, process in children.items():
                if process.poll() is not None:
                    died = f"The {name} stopped unexpectedly (exit status {process.returncode})."
                    break
            time.sleep(0.5)
        _stop_all(children)
        if died:
            raise CommandError(died)
        self.stdout.write("Stopped.")


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in children.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for process in children.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
