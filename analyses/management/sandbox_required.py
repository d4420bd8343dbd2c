"""For the management commands that start engine children (run_studio, make_demo)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from analyses.worker.sandbox import require_working_sandbox


def require_sandbox_for_command() -> None:
    """Stop the command with the sandbox check's message before anything runs, when the
    configured sandbox cannot start an engine child."""
    try:
        require_working_sandbox()
    except ImproperlyConfigured as problem:
        raise CommandError(str(problem)) from None
