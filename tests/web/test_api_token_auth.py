"""`accounts.authentication.ApiTokenAuthentication` over real HTTP, through a tiny DRF view
(tests/web/api_token_urls.py): which tokens open it, the sentence and 401 for those that do
not, and the last-used time written at most once a minute."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import api_token_create, api_token_revoke
from tests.web.api_token_urls import WHOAMI_PATH

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.web.api_token_urls")]


def _call(live_server: Any, authorization: str | None) -> requests.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return requests.get(live_server.url + WHOAMI_PATH, headers=headers, timeout=60)


def _refused_with(response: requests.Response, sentence: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["message"] == sentence


def test_a_valid_token_authenticates_as_its_owner_with_bearer_or_token(live_server: Any, owner: Any) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=30)
    for scheme in ("Bearer", "Token", "bearer"):
        response = _call(live_server, f"{scheme} {secret}")
        assert response.status_code == 200, response.text
        assert response.json() == {"username": owner.get_username(), "token_code": str(token.code)}


def test_no_header_is_401_with_a_bearer_challenge(live_server: Any, owner: Any) -> None:
    response = _call(live_server, None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_revoked_token_is_refused_saying_so(live_server: Any, owner: Any) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    api_token_revoke(actor=owner, token=token)
    _refused_with(_call(live_server, f"Bearer {secret}"), "This API token was revoked.")


def test_an_expired_token_is_refused_saying_so(live_server: Any, owner: Any) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _refused_with(_call(live_server, f"Bearer {secret}"), "This API token has expired.")


def test_an_unknown_or_malformed_token_is_invalid(live_server: Any, owner: Any) -> None:
    _, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    unknown = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for value in (
        f"Bearer {unknown}",
        "Bearer abc",
        f"Bearer {secret[4:]}",
        f"Bearer {secret}é",
        "Bearer gcs_",
    ):
        _refused_with(_call(live_server, value), "Invalid API token.")
    for value in ("Bearer", f"Bearer {secret} extra", "Token "):
        response = _call(live_server, value)
        assert response.status_code == 401
        assert "Invalid Authorization header" in response.json()["error"]["message"]


def test_a_token_of_a_deactivated_user_is_refused(live_server: Any, owner: Any) -> None:
    _, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    _refused_with(
        _call(live_server, f"Bearer {secret}"), "The account this API token belongs to is deactivated."
    )


def test_an_oversize_header_is_refused_before_any_lookup(live_server: Any, owner: Any) -> None:
    _, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    _refused_with(
        _call(live_server, f"Bearer {secret}{'x' * 5000}"),
        "The Authorization header is too long to hold an API token.",
    )


def test_another_scheme_is_not_ours_and_stays_anonymous(live_server: Any, owner: Any) -> None:
    response = _call(live_server, "Basic b2xpdmlhOnNlY3JldA==")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Authentication credentials were not provided."


def test_last_used_is_recorded_at_most_once_a_minute(live_server: Any, owner: Any) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    assert token.last_used_at is None
    assert _call(live_server, f"Bearer {secret}").status_code == 200
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=30)

    # Within the minute: no write.
    recent = timezone.now() - timedelta(seconds=30)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recent)
    assert _call(live_server, f"Bearer {secret}").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == recent

    # A minute later: written again.
    stale = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    assert _call(live_server, f"Bearer {secret}").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None and token.last_used_at > stale + timedelta(minutes=1)


def test_a_refused_token_is_not_marked_used(live_server: Any, owner: Any) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    api_token_revoke(actor=owner, token=token)
    assert _call(live_server, f"Bearer {secret}").status_code == 401
    token.refresh_from_db()
    assert token.last_used_at is None
