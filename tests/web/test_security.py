"""Request-body limits, log-in throttling, enumeration throttles and security headers, over
real HTTP to the live server (and one page in headless Chromium for the CSP)."""

from __future__ import annotations

import datetime
import re
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.db.models import F

from accounts.models import TeamMembership
from analyses.models import Classifier, Video
from tests.conftest import PASSWORD
from tests.web.library_factories import (  # noqa: F401 - fixtures
    ByteSpyHandler,
    model_files,
    private_media_root,
    upload_model,
    upload_video,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)

LOCKOUT = "Too many failed log-in attempts"
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> Any:
    """Sign-up and member-add counts live in the process's cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


# --------------------------------------------------------------------------- body limits
def _raw_exchange(live_server: Any, head: str, body_start: bytes) -> bytes:
    """Send a request head and only the first bytes of its body; return what the server
    answers before the rest is sent (a server that reads the body first never answers)."""
    address = urlsplit(live_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head.encode("latin-1") + body_start)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


@pytest.fixture
def upload_temp_files(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], Path]:
    """(temporary files created during the test, the folder uploads are spooled to)."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    created: list[str] = []
    original = tempfile.NamedTemporaryFile

    def recording(*args: Any, **kwargs: Any) -> Any:
        handle = original(*args, **kwargs)
        created.append(handle.name)
        return handle

    # Django deletes a spooled upload when the request ends: record its creation instead.
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", recording)
    return created, folder


def test_a_huge_multipart_post_to_the_login_page_is_answered_413_before_its_body_is_read(
    live_server: Any, upload_temp_files: tuple[list[str], Path]
) -> None:
    boundary = "gradcam-boundary"
    head = (
        "POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {200 * MB}\r\n\r\n"
    )
    body_start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'.encode()
        + b"\0" * 65536
    )
    answer = _raw_exchange(live_server, head, body_start)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    created, folder = upload_temp_files
    assert created == [] and list(folder.iterdir()) == []


def test_a_large_multipart_post_gets_413_in_words_and_writes_no_temporary_file(
    web: Any, upload_temp_files: tuple[list[str], Path]
) -> None:
    response = web().post(
        "/accounts/login/",
        data={"username": "x", "password": "y"},
        files={"file": ("big.bin", b"\0" * (12 * MB), "application/octet-stream")},
    )
    assert response.status_code == 413
    assert "this page accepts at most 4.0\xa0MB" in response.text
    created, folder = upload_temp_files
    assert created == [] and list(folder.iterdir()) == []
    json_response = web().post(
        "/accounts/login/", data={"x": "y" * (5 * MB)}, headers={"Accept": "application/json"}
    )
    assert json_response.status_code == 413
    assert "accepts at most" in json_response.json()["error"]


def test_a_body_without_content_length_is_refused_on_non_upload_views(live_server: Any) -> None:
    head = (
        "POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    answer = _raw_exchange(live_server, head, b"10000\r\n" + b"a" * 65536)
    assert answer.startswith(b"HTTP/1.1 411"), answer[:200]


def test_file_parts_sent_to_other_views_are_dropped_unread(web: Any, owner: Any, settings: Any) -> None:
    assert settings.FILE_UPLOAD_HANDLERS[0] == "gradcam_site.middleware.UploadViewsOnlyFileHandler"
    # The same handlers with a spy behind ours: it counts the bytes Django would have stored.
    settings.FILE_UPLOAD_HANDLERS = [
        "gradcam_site.middleware.UploadViewsOnlyFileHandler",
        "tests.web.library_factories.ByteSpyHandler",
        "django.core.files.uploadhandler.MemoryFileUploadHandler",
        "django.core.files.uploadhandler.TemporaryFileUploadHandler",
    ]
    ByteSpyHandler.received = {}
    client = web()
    response = client.post(
        "/accounts/login/",
        data={"username": owner.username, "password": PASSWORD},
        files={"attachment": ("notes.bin", b"\1" * MB, "application/octet-stream")},
    )
    assert response.status_code == 302  # the form itself still works
    assert ByteSpyHandler.received == {}


def test_normal_forms_below_the_limit_still_work(web: Any, owner: Any) -> None:
    client = web(owner)
    response = client.post("/accounts/teams/new/", data={"name": "Long notes", "description": "n" * (2 * MB)})
    assert response.status_code == 302


def test_upload_views_take_files_over_the_request_wide_limit(
    web: Any, owner: Any, settings: Any, model_files: dict[str, Path], video_files: dict[str, Path]
) -> None:
    settings.GRADCAM_MAX_REQUEST_BODY_BYTES = 2048
    model, video = model_files["good_h5"], video_files["mp4"]
    assert model.stat().st_size > 2048 and video.stat().st_size > 2048
    client = web(owner)
    assert upload_model(client, model, process=False).status_code == 302
    assert upload_video(client, video, process=False).status_code == 302
    assert (
        Classifier.objects.filter(owner=owner).count() == 1 and Video.objects.filter(owner=owner).count() == 1
    )
    refused = client.post("/accounts/teams/new/", data={"name": "x", "description": "d" * 4096})
    assert refused.status_code == 413


# --------------------------------------------------------------------------- log-in throttling
@pytest.fixture
def behind_proxy(settings: Any) -> None:
    """Trust X-Forwarded-For, so that one test can speak from several addresses."""
    settings.GRADCAM_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"


def _from(web: Any, address: str) -> Any:
    client = web()
    client.session.headers["X-Forwarded-For"] = address
    return client


def _log_in(client: Any, username: str, password: str, path: str = "/accounts/login/") -> Any:
    return client.post(path, data={"username": username, "password": password})


def _fail_five_times(client: Any, username: str, path: str = "/accounts/login/") -> Any:
    for attempt in range(1, 5):
        response = _log_in(client, username, f"wrong-{attempt}", path)
        assert response.status_code == 200, attempt
        assert LOCKOUT not in response.text and "correct username and password" in response.text, attempt
    fifth = _log_in(client, username, "wrong-5", path)
    assert fifth.status_code == 429 and LOCKOUT in fifth.text
    return fifth


def test_five_failures_lock_the_account_even_for_the_right_password_until_the_cool_off(
    web: Any, owner: Any, member: Any, stranger: Any, behind_proxy: None
) -> None:
    attacker = _from(web, "203.0.113.5")
    _fail_five_times(attacker, owner.username)
    sixth = _log_in(attacker, owner.username, "wrong-6")
    assert sixth.status_code == 429 and LOCKOUT in sixth.text and "15 minutes" in sixth.text
    right = _log_in(_from(web, "198.51.100.7"), owner.username, PASSWORD)  # the account, from elsewhere
    assert right.status_code == 429 and LOCKOUT in right.text
    same_address = _log_in(attacker, stranger.username, PASSWORD)  # the address, another account
    assert same_address.status_code == 429
    unaffected = _log_in(_from(web, "198.51.100.7"), member.username, PASSWORD)
    assert unaffected.status_code == 302
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - datetime.timedelta(minutes=16))
    after_cool_off = _log_in(_from(web, "198.51.100.8"), owner.username, PASSWORD)
    assert after_cool_off.status_code == 302


def _comparable(page: str, username: str) -> str:
    page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", page)
    return page.replace(username, "USERNAME")


def test_a_username_that_does_not_exist_is_locked_out_exactly_like_a_real_one(
    web: Any, owner: Any, behind_proxy: None
) -> None:
    real = _fail_five_times(_from(web, "203.0.113.10"), owner.username)
    ghost = _fail_five_times(_from(web, "203.0.113.11"), "nobody_by_that_name")
    assert _comparable(real.text, owner.username) == _comparable(ghost.text, "nobody_by_that_name")
    again = _log_in(_from(web, "203.0.113.12"), "nobody_by_that_name", "anything")
    assert again.status_code == 429 and LOCKOUT in again.text


def test_the_admin_login_is_throttled_too(web: Any, owner: Any, behind_proxy: None) -> None:
    owner.is_staff = owner.is_superuser = True
    owner.save(update_fields=["is_staff", "is_superuser"])
    client = _from(web, "203.0.113.20")
    fifth = _fail_five_times(client, owner.username, "/admin/login/")
    assert 'class="errornote"' in fifth.text  # the admin's own page, with the message
    refused = _log_in(client, owner.username, PASSWORD, "/admin/login/")
    assert refused.status_code == 429
    admin_home = client.get("/admin/")
    assert admin_home.status_code == 302 and "/admin/login/" in admin_home.headers["Location"]


def test_without_a_trusted_proxy_header_every_client_is_its_remote_address(
    web: Any, owner: Any, member: Any
) -> None:
    _fail_five_times(_from(web, "203.0.113.30"), owner.username)
    # X-Forwarded-For is ignored by default: both clients are 127.0.0.1, which is locked.
    other = _log_in(_from(web, "198.51.100.30"), member.username, PASSWORD)
    assert other.status_code == 429


# --------------------------------------------------------------------------- enumeration
def test_sign_up_attempts_are_throttled_per_address(
    web: Any, owner: Any, settings: Any, behind_proxy: None
) -> None:
    settings.GRADCAM_SIGNUP_LIMIT_PER_HOUR = 3
    prober = _from(web, "203.0.113.40")
    for _ in range(3):
        taken = prober.post(
            "/accounts/signup/",
            data={"username": owner.username, "password1": PASSWORD, "password2": PASSWORD},
        )
        assert taken.status_code == 400 and "already exists" in taken.text
    refused = prober.post(
        "/accounts/signup/", data={"username": owner.username, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert refused.status_code == 429
    assert "Too many sign-up attempts" in refused.text and "already exists" not in refused.text
    newcomer = _from(web, "198.51.100.40").post(
        "/accounts/signup/", data={"username": "nina", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert newcomer.status_code == 302


def test_adding_members_by_username_is_rate_limited_per_owner(
    web: Any, team: Any, owner: Any, stranger: Any, settings: Any
) -> None:
    settings.GRADCAM_MEMBER_ADD_LIMIT_PER_HOUR = 3
    client = web(owner)
    add_path = f"/accounts/teams/{team.code}/members/add/"
    for index in range(3):
        missing = client.post(add_path, data={"username": f"guess_{index}", "role": "member"})
        assert missing.status_code == 400 and "There is no user named" in missing.text
    refused = client.post(add_path, data={"username": stranger.username, "role": "member"})
    assert refused.status_code == 429 and "too many times" in refused.text
    assert not TeamMembership.objects.filter(team=team, user=stranger).exists()


# --------------------------------------------------------------------------- headers
def test_pages_carry_a_strict_content_security_policy_and_the_security_headers(web: Any) -> None:
    response = web().get("/accounts/login/")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in policy
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def _csp_violations(page: Any) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    return messages


@pytest.mark.browser
def test_log_in_sign_up_and_admin_pages_load_without_a_csp_violation(
    browser: Any, owner: Any, team: Any
) -> None:
    from tests.conftest import browser_login

    owner.is_staff = owner.is_superuser = True
    owner.save(update_fields=["is_staff", "is_superuser"])
    console = _csp_violations(browser)
    for path in ("/accounts/login/", "/accounts/signup/"):
        browser.goto(path)
    browser_login(browser, owner)
    for path in (
        "/accounts/password/",
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{owner.pk}/change/",
        f"/admin/accounts/team/{team.pk}/change/",
    ):
        response = browser.goto(path)
        assert response is not None and response.status == 200, path
    assert [text for text in console if "Content Security Policy" in text] == []
    # The policy is enforced and a violation would show: an inline style set now is refused.
    with browser.expect_console_message(timeout=10_000) as refused:
        browser.evaluate("document.body.setAttribute('style', 'outline: 3px solid red')")
    assert "Content Security Policy" in refused.value.text
