"""Shared fixtures: the three personas, a real-HTTP client and a headless Chromium page.

Personas (every access test uses all three):
- `owner`: owner-role member of `team` ("Vision Lab"); owns the objects a test creates.
- `member`: member-role member of `team`; things shared with the team are visible to them.
- `stranger`: in no team; must get 404 on anything private.
All log in with the password `PASSWORD`.

`web(user=None)` returns a `WebClient` that talks to pytest-django's `live_server` over real
HTTP (requests), logged in through the real login form when a user is given. Redirects are
NOT followed unless `allow_redirects=True` is passed, so tests can assert on 302s.

`browser` is a Playwright page in headless Chromium whose relative URLs resolve against the
live server (`page.goto("/accounts/login/")`). Helpers: `browser_login(page, user)`,
`screenshot(page, name)`; they are importable (`from tests.conftest import browser_login`) and
also available as fixtures of the same names returning the function.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

PASSWORD = "correct-horse-battery-staple-42"
SCREENS_DIR = Path(__file__).resolve().parent.parent / "test-artifacts" / "screens"
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HTTP_TIMEOUT_SECONDS = 120


def pytest_configure(config: pytest.Config) -> None:
    # WhiteNoise warns once that STATIC_ROOT (filled by collectstatic in production) is
    # missing; tests serve static files through the finders instead.
    config.addinivalue_line("filterwarnings", "ignore:No directory at:UserWarning")
    # Django's live server wraps the site in `_MediaFilesHandler`, which serves MEDIA_ROOT
    # directly under MEDIA_URL with no permission check (and crashes when MEDIA_URL is None,
    # as in our settings). Production never serves media that way — every file goes through
    # a view that checks access — so the live server must not either, or file-access tests
    # would test Django's test helper instead of our views.
    from django.test import testcases

    testcases._MediaFilesHandler._should_handle = lambda self, path: False  # type: ignore[method-assign]


@pytest.fixture(scope="session", autouse=True)
def _engine_sandbox() -> None:
    """Engine children run in a bubblewrap sandbox. Without bwrap, CI fails here; a developer
    machine runs them unsandboxed, with a warning (tests/worker/test_sandbox.py skips then)."""
    import warnings

    from django.conf import settings

    from analyses.worker.sandbox import sandbox_problem

    problem = sandbox_problem()
    if not problem:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"the engine sandbox is unavailable: {problem} (apt-get install bubblewrap)")
    warnings.warn(
        f"engine sandbox unavailable ({problem}): engine children run unsandboxed in this test run",
        stacklevel=2,
    )
    settings.GRADCAM_SANDBOX = "off"


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    """PBKDF2's deliberate slowness (~0.5 s per log-in on this CPU) would dominate web tests
    that log in as three personas; tests do not test its strength."""
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _no_warm_engine_left_behind() -> Iterator[None]:
    """A test that ran a job in this process (run_queued_tasks) leaves the runner's warm spare
    engine started with that test's settings; the next test would take it instead of starting
    its own (e.g. with another GRADCAM_ENGINE_PYTHON). Discard it after each test."""
    yield
    runner = sys.modules.get("analyses.worker.runner")
    if runner is not None:
        runner._discard_spare_at_exit()


@pytest.fixture(scope="session", autouse=True)
def _audit_triggers_lifted_around_flush() -> Iterator[None]:
    """pytest-django empties the database after each `transaction=True` test with Django's
    flush (SQLite: DELETE FROM, PostgreSQL: TRUNCATE), which the audit table's append-only
    triggers refuse. Drop them for the flush only, and re-create them right after: the
    triggers stay in force for everything a test does. Only triggers that were there are
    re-created, so a migration that failed to create them is not papered over."""
    from django.core.management.commands import flush
    from django.db import connections

    from audit.triggers import audit_trigger_names, audit_triggers_create, audit_triggers_drop

    original_handle = flush.Command.handle

    def handle_with_triggers_lifted(self: Any, *args: Any, **options: Any) -> Any:
        connection = connections[options.get("database") or "default"]
        if not audit_trigger_names(connection=connection):
            return original_handle(self, *args, **options)
        audit_triggers_drop(connection=connection)
        try:
            return original_handle(self, *args, **options)
        finally:
            audit_triggers_create(connection=connection)

    flush.Command.handle = handle_with_triggers_lifted  # type: ignore[method-assign]
    try:
        yield
    finally:
        flush.Command.handle = original_handle  # type: ignore[method-assign]


# --------------------------------------------------------------------------- personas
def _make_user(*, username: str, email: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, email=email, password=PASSWORD)


@pytest.fixture
def owner(db: None) -> Any:
    return _make_user(username="olivia_owner", email="olivia@example.org")


@pytest.fixture
def member(db: None) -> Any:
    return _make_user(username="mark_member", email="mark@example.org")


@pytest.fixture
def stranger(db: None) -> Any:
    return _make_user(username="sam_stranger", email="sam@example.org")


@pytest.fixture
def team(db: None, owner: Any, member: Any) -> Any:
    """ "Vision Lab": `owner` with role owner, `member` with role member.

    Built directly with the ORM (not the service) so fixtures do not depend on the code
    under test and write no audit events that tests might count.
    """
    from accounts.models import Team, TeamMembership, TeamRole

    vision_lab = Team.objects.create(name="Vision Lab", created_by=owner)
    TeamMembership.objects.create(team=vision_lab, user=owner, role=TeamRole.OWNER, added_by=owner)
    TeamMembership.objects.create(team=vision_lab, user=member, role=TeamRole.MEMBER, added_by=owner)
    return vision_lab


# --------------------------------------------------------------------------- real HTTP
class WebClient:
    """A requests.Session bound to the live server, adding Django's CSRF token to POSTs."""

    def __init__(self, *, base_url: str, user: Any | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.user = user

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + ("" if path.startswith("/") else "/") + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", HTTP_TIMEOUT_SECONDS)
        return self.session.get(self.url(path), **kwargs)

    def csrf_token(self) -> str:
        token = self.session.cookies.get("csrftoken")
        if not token:
            # Any page rendering a form sets the cookie; the login page is always public.
            self.session.get(self.url("/accounts/login/"), timeout=HTTP_TIMEOUT_SECONDS)
            token = self.session.cookies.get("csrftoken")
        if not token:
            raise AssertionError("The server did not set a csrftoken cookie on /accounts/login/")
        return token

    def post(
        self,
        path: str,
        data: dict[str, Any] | list[tuple[str, Any]] | None = None,
        files: Any = None,
        **kwargs: Any,
    ) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", HTTP_TIMEOUT_SECONDS)
        token = self.csrf_token()
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("X-CSRFToken", token)
        headers.setdefault("Referer", self.url("/"))
        if "json" in kwargs and data is None and files is None:
            # A JSON body (the API): requests would send `data` instead of `json` if both were given.
            return self.session.post(self.url(path), headers=headers, **kwargs)
        if isinstance(data, list):
            payload: Any = [*data, ("csrfmiddlewaretoken", token)]
        else:
            payload = {**(data or {}), "csrfmiddlewaretoken": token}
        return self.session.post(self.url(path), data=payload, files=files, headers=headers, **kwargs)

    def login(self, *, user: Any, password: str = PASSWORD) -> None:
        response = self.post("/accounts/login/", data={"username": user.get_username(), "password": password})
        if response.status_code != 302 or "/accounts/login" in response.headers.get("Location", ""):
            raise AssertionError(f"Login as {user.get_username()} failed: HTTP {response.status_code}")
        self.user = user


@pytest.fixture
def web(live_server: Any) -> Callable[..., WebClient]:
    def make_client(user: Any | None = None) -> WebClient:
        client = WebClient(base_url=live_server.url)
        if user is not None:
            client.login(user=user)
        return client

    return make_client


# --------------------------------------------------------------------------- browser
def _chromium_missing() -> None:
    message = (
        f"{CHROMIUM_PATH} is missing: install it with `apt-get install chromium` to run the browser tests"
    )
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Any]:
    """One Chromium for the session (launching costs a second); each test gets a fresh context."""
    if not Path(CHROMIUM_PATH).exists():
        _chromium_missing()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread, which makes Django refuse
    # ORM calls from test code ("You cannot call this from an async context"). The calls are
    # in fact synchronous, so allow them for the rest of the session.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def browser(_chromium: Any, live_server: Any) -> Iterator[Any]:
    context = _chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def browser_login(page: Any, user: Any, *, password: str = PASSWORD) -> None:
    """Log in through the real login form and wait until we have left it."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", password)
    page.click("form#login-form button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/accounts/login/).*$"))


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG to test-artifacts/screens/<name>.png and return its path."""
    SCREENS_DIR.mkdir(parents=True, exist_ok=True)
    target = SCREENS_DIR / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    return target


@pytest.fixture(name="browser_login")
def browser_login_fixture() -> Callable[..., None]:
    return browser_login


@pytest.fixture(name="screenshot")
def screenshot_fixture() -> Callable[..., Path]:
    return screenshot
