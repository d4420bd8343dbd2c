"""GET /healthz/: is this web process able to serve? For load balancers, Docker's HEALTHCHECK
and `docker/healthcheck.py`.

200 {"status": "ok", "database": "ok", "broker": "ok" | "not used"} when the database answers a
query and (with REDIS_URL) Redis answers a PING; 503 with the failing part named otherwise.

Each check runs with its own short timeout, in a thread joined with a deadline, so a database
host that drops packets cannot hold a gunicorn worker (or the load balancer's probe) for
minutes. The answer names the part and a fixed word ("unreachable", "timeout"), never an
exception's text: that may quote a host name, a user or a URL with a password; the details go
to the server log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import load_backend
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0
OK = "ok"
NOT_USED = "not used"
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"


def _database_answers() -> None:
    """SELECT 1 on a fresh connection to the default database (never the request's own one, so
    a broken pooled connection is not what is tested, and nothing is left open)."""
    # connections.settings: settings.DATABASES with Django's defaults filled in (AUTOCOMMIT,
    # TIME_ZONE, ...), which a DatabaseWrapper needs.
    settings_dict: dict[str, Any] = dict(connections.settings[DEFAULT_DB_ALIAS])
    options = dict(settings_dict.get("OPTIONS") or {})
    if "postgresql" in str(settings_dict.get("ENGINE", "")):
        # libpq's own connect timeout, so the thread ends soon after the deadline too.
        options["connect_timeout"] = max(1, int(CHECK_TIMEOUT_SECONDS))
    settings_dict["OPTIONS"] = options
    backend = load_backend(str(settings_dict["ENGINE"]))
    connection = backend.DatabaseWrapper(settings_dict, alias="healthcheck")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def _broker_answers() -> None:
    import redis

    client = redis.Redis.from_url(
        str(settings.REDIS_URL),
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        if not client.ping():
            raise ConnectionError("PING was not answered with PONG")
    finally:
        client.close()


def _bounded(name: str, check: Callable[[], None]) -> str:
    """OK, UNREACHABLE or TIMEOUT for `check`, within CHECK_TIMEOUT_SECONDS plus a little."""
    outcome: list[str] = []

    def run() -> None:
        try:
            check()
        except Exception:
            logger.warning("health check: the %s is unreachable", name, exc_info=True)
            outcome.append(UNREACHABLE)
        else:
            outcome.append(OK)

    # A daemon thread: if the check hangs past its own timeouts, it must not keep the process
    # from exiting, and the request is answered anyway.
    worker = threading.Thread(target=run, name=f"healthz-{name}", daemon=True)
    worker.start()
    worker.join(CHECK_TIMEOUT_SECONDS + 1.0)
    if not outcome:
        logger.warning("health check: the %s did not answer within %.0f s", name, CHECK_TIMEOUT_SECONDS)
        return TIMEOUT
    return outcome[0]


def run_checks() -> dict[str, str]:
    """The health report: {"status", "database", "broker"}; status is "ok" only if all are."""
    report = {
        "database": _bounded("database", _database_answers),
        "broker": _bounded("broker", _broker_answers) if settings.REDIS_URL else NOT_USED,
    }
    healthy = all(value in (OK, NOT_USED) for value in report.values())
    return {"status": OK if healthy else "unavailable", **report}


@login_not_required
@csrf_exempt
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    # Reads nothing from the request and touches no session: a probe every few seconds must
    # not create session rows or need a CSRF cookie.
    report = run_checks()
    return JsonResponse(report, status=200 if report["status"] == OK else 503)
