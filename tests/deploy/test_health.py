"""GET /healthz/ over real HTTP (the live server): what load balancers and Docker's HEALTHCHECK see."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.deploy.tools import DOCKER_DIR, free_port, redis_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_healthz_is_ok_without_login_and_sets_no_cookie(web: Callable[..., Any]) -> None:
    response = web().get("/healthz/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "not used"}
    assert "Set-Cookie" not in response.headers
    assert "no-cache" in response.headers["Cache-Control"]


def test_healthz_answers_head_and_refuses_post_without_a_csrf_failure(web: Callable[..., Any]) -> None:
    client = web()
    assert client.session.head(client.url("/healthz/"), timeout=30).status_code == 200
    # No CSRF token sent: 405 (method), not 403 (CSRF) — the probe never needs a cookie.
    assert client.session.post(client.url("/healthz/"), timeout=30).status_code == 405


def test_healthz_reports_the_broker_ok_when_redis_answers(web: Callable[..., Any], settings: Any) -> None:
    with redis_server(password="broker-pass-123") as port:
        settings.REDIS_URL = f"redis://:broker-pass-123@127.0.0.1:{port}/0"
        response = web().get("/healthz/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_is_503_naming_the_broker_when_redis_is_unreachable_and_hides_its_url(
    web: Callable[..., Any], settings: Any
) -> None:
    settings.REDIS_URL = f"redis://:top-secret-redis-pw@127.0.0.1:{free_port()}/0"
    response = web().get("/healthz/")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unreachable"}
    assert "top-secret" not in response.text and "127.0.0.1" not in response.text


def test_healthz_is_503_naming_the_database_when_it_is_unreachable_and_hides_its_password(
    web: Callable[..., Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the health check reads DATABASES afresh; the live server's own connection is untouched.
    monkeypatch.setitem(
        settings.DATABASES,
        "default",
        {
            **settings.DATABASES["default"],
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "gradcam",
            "USER": "gradcam",
            "PASSWORD": "top-secret-db-pw",
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "OPTIONS": {},
        },
    )
    response = web().get("/healthz/")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable", "broker": "not used"}
    assert "top-secret" not in response.text


def test_healthz_answers_within_a_few_seconds_when_the_broker_never_replies(
    web: Callable[..., Any], settings: Any, silent_port: int
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{silent_port}/0"
    started = time.monotonic()
    response = web().get("/healthz/")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["broker"] in {"unreachable", "timeout"}
    assert elapsed < 8, f"the health check took {elapsed:.1f} s"


def _run_healthcheck(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER_DIR / "healthcheck.py"), *args],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_image_healthcheck_passes_against_a_healthy_web_server_and_fails_without_one(
    live_server: Any,
) -> None:
    healthy = _run_healthcheck(
        GRADCAM_HEALTHCHECK_URL=f"{live_server.url}/healthz/", ALLOWED_HOSTS="localhost"
    )
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout) == {"status": "ok", "database": "ok", "broker": "not used"}
    nobody = _run_healthcheck(GRADCAM_HEALTHCHECK_URL=f"http://127.0.0.1:{free_port()}/healthz/")
    assert nobody.returncode == 1


def test_the_worker_healthcheck_runs_the_checks_in_process(settings: Any) -> None:
    database = f"sqlite:///{settings.DATABASES['default']['NAME']}"
    healthy = _run_healthcheck("--direct", DATABASE_URL=database)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout.strip().splitlines()[-1])["database"] == "ok"
    broken = _run_healthcheck(
        "--direct", DATABASE_URL=database, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    assert broken.returncode == 1
    assert json.loads(broken.stdout.strip().splitlines()[-1])["broker"] == "unreachable"
