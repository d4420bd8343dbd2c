"""Personal API tokens on the account page (/accounts/tokens/) and in the admin, over real
HTTP: each user sees and revokes only their own, the secret is shown once and stored only as a
hash, names, expiries and the number of live tokens are bounded, and every creation and
revocation is audited without the secret."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import (
    MAX_LIVE_TOKENS_PER_USER,
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
)
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/accounts/tokens/"


def _secret_in(html: str) -> str:
    match = re.search(r'value="(gcs_[A-Za-z0-9_-]{43})"', html)
    assert match, "no secret on the page"
    return match.group(1)


def _create(client: Any, **data: Any) -> Any:
    return client.post(PAGE, data={"name": "training cluster", "expires_in_days": "30", **data})


@pytest.fixture
def admin_client(web: Any) -> Any:
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD

    staff = get_user_model().objects.create_superuser(
        username="root_admin", email="root@example.org", password=PASSWORD
    )
    return web(staff)


def test_the_page_needs_a_login(web: Any) -> None:
    response = web().get(PAGE)
    assert response.status_code == 302
    assert "/accounts/login/" in response.headers["Location"]


def test_the_account_menu_links_the_page(web: Any, owner: Any) -> None:
    response = web(owner).get("/accounts/teams/")
    assert response.status_code == 200
    assert f'href="{PAGE}"' in response.text


def test_creating_shows_the_secret_once_and_stores_only_its_hash(web: Any, owner: Any) -> None:
    client = web(owner)
    response = _create(client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    secret = _secret_in(response.text)
    assert "data-copy-from" in response.text

    token = ApiToken.objects.get(user=owner)
    assert token.name == "training cluster"
    assert token.key_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[4:12]
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    # No column holds the secret.
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert all(secret not in str(value) for value in row.values())
    assert api_token_authenticate(secret) == owner

    listing = client.get(PAGE)
    assert listing.status_code == 200
    assert "training cluster" in listing.text and f"gcs_{token.prefix}" in listing.text
    assert secret not in listing.text


def test_an_empty_expiry_makes_a_token_that_never_expires(web: Any, owner: Any) -> None:
    response = _create(web(owner), expires_in_days="")
    assert response.status_code == 200
    assert ApiToken.objects.get(user=owner).expires_at is None


def test_each_user_sees_only_their_own_tokens(web: Any, owner: Any, stranger: Any) -> None:
    token, secret = api_token_create(user=owner, name="olivia's laptop", expires_in_days=None)
    page = web(stranger).get(PAGE)
    assert page.status_code == 200
    assert "olivia&#x27;s laptop" not in page.text and token.prefix not in page.text
    assert secret not in page.text
    own = web(owner).get(PAGE)
    assert own.status_code == 200
    assert "olivia&#x27;s laptop" in own.text and secret not in own.text


def test_a_stranger_cannot_revoke_someone_elses_token(web: Any, owner: Any, stranger: Any) -> None:
    token, _ = api_token_create(user=owner, name="CI", expires_in_days=None)
    response = web(stranger).post(f"/accounts/tokens/{token.code}/revoke/")
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert not AuditEvent.objects.filter(action="api_token.revoked").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"name": "   "}, "This field is required."),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"expires_in_days": "0"}, "greater than or equal to 1"),
        ({"expires_in_days": "366"}, "less than or equal to 365"),
        ({"expires_in_days": "-5"}, "greater than or equal to 1"),
        ({"expires_in_days": "ten"}, "Enter a whole number."),
        ({"expires_in_days": "9" * 5000}, "Enter a whole number."),
    ],
)
def test_bad_names_and_expiries_are_refused_and_nothing_is_stored(
    web: Any, owner: Any, data: dict[str, str], message: str
) -> None:
    response = _create(web(owner), **data)
    assert response.status_code == 400
    assert message in response.text
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="api_token.created").exists()


@pytest.mark.parametrize("days", [0, 366, -1, "x", 2.5, True])
def test_the_service_bounds_the_expiry_whatever_the_caller(owner: Any, days: Any) -> None:
    with pytest.raises(ValidationError) as refusal:
        api_token_create(user=owner, name="CI", expires_in_days=days)
    assert "expires_in_days" in refusal.value.message_dict
    assert not ApiToken.objects.exists()


def test_the_service_refuses_an_empty_or_long_name(owner: Any) -> None:
    for name in ("", "  ", "n" * 101):
        with pytest.raises(ValidationError):
            api_token_create(user=owner, name=name, expires_in_days=None)
    assert not ApiToken.objects.exists()


def test_live_tokens_are_limited_per_user_and_dead_ones_do_not_count(
    web: Any, owner: Any, stranger: Any
) -> None:
    tokens = [
        api_token_create(user=owner, name=f"t{i}", expires_in_days=None)[0]
        for i in range(MAX_LIVE_TOKENS_PER_USER)
    ]
    client = web(owner)
    response = _create(client)
    assert response.status_code == 400
    assert f"You have {MAX_LIVE_TOKENS_PER_USER} live API tokens, the most allowed" in response.text
    assert ApiToken.objects.filter(user=owner).count() == MAX_LIVE_TOKENS_PER_USER
    # Someone else's limit is their own.
    api_token_create(user=stranger, name="mine", expires_in_days=None)

    api_token_revoke(actor=owner, token=tokens[0])
    ApiToken.objects.filter(pk=tokens[1].pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert _create(client).status_code == 200
    assert _create(client).status_code == 200
    assert _create(client).status_code == 400


def test_revoking_through_the_page_is_a_post_audited_once(web: Any, owner: Any) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    client = web(owner)
    path = f"/accounts/tokens/{token.code}/revoke/"
    assert client.get(path).status_code == 405
    # Without the CSRF token, refused.
    bare = client.session.post(client.url(path), headers={"Referer": client.url("/")}, timeout=60)
    assert bare.status_code == 403

    response = client.post(path)
    assert response.status_code == 302 and response.headers["Location"] == PAGE
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == owner
    assert api_token_authenticate(secret) is None
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "API token “CI” revoked" in page.text and 'data-state="revoked"' in page.text

    assert client.post(path).status_code == 302  # again: nothing more happens
    assert AuditEvent.objects.filter(action="api_token.revoked").count() == 1


def test_creation_and_revocation_are_audited_without_the_secret(web: Any, owner: Any) -> None:
    client = web(owner)
    secret = _secret_in(_create(client, name="nightly CI").text)
    token = ApiToken.objects.get(user=owner)
    assert client.post(f"/accounts/tokens/{token.code}/revoke/").status_code == 302

    created = AuditEvent.objects.get(action="api_token.created")
    revoked = AuditEvent.objects.get(action="api_token.revoked")
    for event in (created, revoked):
        assert event.actor == owner and event.subject_owner == owner
        assert event.target_type == "apitoken" and event.target_code == token.code
        assert event.data["name"] == "nightly CI" and event.data["prefix"] == token.prefix
        text = json.dumps(event.data)
        assert secret not in text and token.key_sha256 not in text
    assert created.data["expires_at"] == token.expires_at.isoformat()
    # The owner finds both on their audit page.
    audit_page = client.get("/audit/?action=api_token.")
    assert audit_page.status_code == 200
    assert "api_token.created" in audit_page.text and "api_token.revoked" in audit_page.text
    assert secret not in audit_page.text


def test_the_admin_lists_tokens_without_secret_or_hash_and_read_only(admin_client: Any, owner: Any) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=7)
    listing = admin_client.get("/admin/accounts/apitoken/")
    assert listing.status_code == 200
    assert (
        "CI" in listing.text
        and f"gcs_{token.prefix}" in listing.text
        and owner.get_username() in listing.text
    )
    assert f"/admin/accounts/apitoken/{token.pk}/change/" in listing.text
    detail = admin_client.get(f"/admin/accounts/apitoken/{token.pk}/change/")
    assert detail.status_code == 200
    for page in (listing, detail):
        assert secret not in page.text and token.key_sha256 not in page.text
    assert admin_client.get("/admin/accounts/apitoken/add/").status_code == 403
    assert admin_client.get(f"/admin/accounts/apitoken/{token.pk}/delete/").status_code == 403
    # A change posted anyway is refused.
    assert (
        admin_client.post(f"/admin/accounts/apitoken/{token.pk}/change/", data={"name": "x"}).status_code
        == 403
    )
    token.refresh_from_db()
    assert token.name == "CI"


def test_the_admin_revoke_action_goes_through_the_service(
    admin_client: Any, owner: Any, stranger: Any
) -> None:
    token, secret = api_token_create(user=owner, name="CI", expires_in_days=None)
    other, _ = api_token_create(user=stranger, name="kept", expires_in_days=None)
    response = admin_client.post(
        "/admin/accounts/apitoken/",
        data={"action": "revoke_tokens", "_selected_action": [str(token.pk)]},
        allow_redirects=True,
    )
    assert response.status_code == 200
    assert "1 API token revoked." in response.text
    token.refresh_from_db()
    other.refresh_from_db()
    assert token.revoked_at is not None and other.revoked_at is None
    assert api_token_authenticate(secret) is None
    event = AuditEvent.objects.get(action="api_token.revoked")
    assert event.actor_username == "root_admin" and event.subject_owner == owner
    assert event.data["via"] == "admin" and event.data["username"] == owner.get_username()
    # The owner sees that staff revoked it.
    assert "api_token.revoked" in admin_client.get("/audit/?action=api_token.").text
