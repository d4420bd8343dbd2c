"""Sign-up, log-in, log-out and password change over real HTTP."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a-brand-new-passphrase-77"


def _is_redirect_to_login(response) -> bool:
    return response.status_code == 302 and "/accounts/login/" in response.headers["Location"]


def test_signup_creates_the_user_and_logs_them_in(web) -> None:
    client = web()
    assert client.get("/accounts/signup/").status_code == 200
    response = client.post(
        "/accounts/signup/",
        data={"username": "nina", "email": "", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    user = get_user_model().objects.get(username="nina")
    assert user.email == ""
    assert user.check_password(PASSWORD)
    # The session cookie belongs to the new user: a login-only page now answers 200.
    teams_page = client.get("/accounts/teams/")
    assert teams_page.status_code == 200
    assert "nina" in teams_page.text


def test_signup_with_mismatched_passwords_is_refused_and_stores_nothing(web) -> None:
    response = web().post(
        "/accounts/signup/",
        data={"username": "nina", "password1": PASSWORD, "password2": PASSWORD + "x"},
    )
    assert response.status_code == 400
    assert "password fields didn" in response.text.replace("’", "'")
    assert not get_user_model().objects.filter(username="nina").exists()


def test_signup_refuses_a_username_differing_only_in_case(web, owner) -> None:
    response = web().post(
        "/accounts/signup/",
        data={
            "username": owner.username.upper(),
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 400
    assert "already exists" in response.text
    assert get_user_model().objects.filter(username__iexact=owner.username).count() == 1


def test_signup_refuses_a_weak_password(web) -> None:
    response = web().post(
        "/accounts/signup/", data={"username": "nina", "password1": "123", "password2": "123"}
    )
    assert response.status_code == 400
    assert "too short" in response.text
    assert not get_user_model().objects.filter(username="nina").exists()


def test_login_with_the_right_password_opens_the_pages(web, owner) -> None:
    client = web(user=owner)  # logs in through the real form, or raises
    page = client.get("/accounts/teams/")
    assert page.status_code == 200
    assert owner.username in page.text


def test_login_with_a_wrong_password_is_refused(web, owner) -> None:
    client = web()
    response = client.post(
        "/accounts/login/", data={"username": owner.username, "password": "wrong-password"}
    )
    assert response.status_code == 200
    assert "enter a correct username and password" in response.text
    assert _is_redirect_to_login(client.get("/accounts/teams/"))


def test_login_follows_a_safe_next_and_ignores_an_external_one(web, owner) -> None:
    client = web()
    safe = client.post(
        "/accounts/login/?next=/accounts/teams/",
        data={"username": owner.username, "password": PASSWORD, "next": "/accounts/teams/"},
    )
    assert safe.headers["Location"] == "/accounts/teams/"
    other = web()
    unsafe = other.post(
        "/accounts/login/",
        data={"username": owner.username, "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert unsafe.status_code == 302
    assert "evil.example" not in unsafe.headers["Location"]


@pytest.mark.parametrize("path", ["/accounts/teams/", "/accounts/teams/new/", "/accounts/password/"])
def test_account_pages_require_login(web, path: str) -> None:
    assert _is_redirect_to_login(web().get(path))


def test_login_and_signup_pages_are_public_and_styled(web) -> None:
    client = web()
    for path in ("/accounts/login/", "/accounts/signup/"):
        page = client.get(path)
        assert page.status_code == 200
        assert "3D Grad-CAM Studio" in page.text
        assert re.search(r'<link rel="stylesheet" href="/static/css/app\.css', page.text)
    css = client.get("/static/css/app.css")
    assert css.status_code == 200
    assert ".badge-succeeded" in css.text


def test_pages_load_no_asset_from_another_host(web, owner) -> None:
    response = web(user=owner).get("/accounts/teams/")
    assert response.status_code == 200
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', response.text)
    assert external == []


def test_logout_is_a_post_and_ends_the_session(web, owner) -> None:
    client = web(user=owner)
    # A GET must not log anyone out (a link or an <img> could otherwise do it).
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/accounts/teams/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert _is_redirect_to_login(client.get("/accounts/teams/"))


def test_logout_form_is_in_the_navigation(web, owner) -> None:
    page = web(user=owner).get("/accounts/teams/").text
    assert re.search(r'<form method="post" action="/accounts/logout/"', page)
    for link in ('href="/analyses/"', 'href="/classifiers/"', 'href="/videos/"', 'href="/accounts/teams/"'):
        assert link in page


def test_password_change_requires_the_old_password(web, owner) -> None:
    client = web(user=owner)
    response = client.post(
        "/accounts/password/",
        data={"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "old password was entered incorrectly" in response.text
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_password_change_keeps_the_session_and_the_new_password_works(web, owner) -> None:
    client = web(user=owner)
    response = client.post(
        "/accounts/password/",
        data={"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/accounts/password/done/"
    assert client.get("/accounts/teams/").status_code == 200  # still logged in here
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    fresh = web()
    refused = fresh.post("/accounts/login/", data={"username": owner.username, "password": PASSWORD})
    assert refused.status_code == 200
    fresh.login(user=owner, password=NEW_PASSWORD)
    assert fresh.get("/accounts/teams/").status_code == 200
