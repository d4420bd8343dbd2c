"""Every operation of the API, read from its own schema, against a seeded database (the example
database `.ci/api_fuzz.py` fuzzes): no credentials, a revoked token, an expired token and the
token of a deactivated account all get 401 in the one error shape; another user's valid token
gets 404 on every operation that names one of the owner's objects, and nothing changes.

The per-resource behaviour of the owner, team members and users things are shared with is
pinned in the resource's own test module (test_api_<resource>.py)."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from typing import Any

import pytest
import requests
import yaml
from django.core.management import call_command

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Which seeded codes fill a path whose first segment is this resource.
_UNKNOWN = "5b1e0c2a-3d4f-4a6b-8c9d-0e1f2a3b4c5d"
_RESOURCE_CODES = {
    "classifiers": "classifiers",
    "videos": "videos",
    "analyses": "analyses",
    "verifications": "verifications",
    "shares": "shares",
    "share-links": "share-links",
    "comparisons": "comparisons",
    "differences": "differences",
    "teams": "teams",
    "audit-events": "audit_events",
}


@pytest.fixture
def seeded(settings: Any, tmp_path: Any) -> dict[str, Any]:
    from tests.demo_cache import build_demo, demo_cache_dir

    settings.MEDIA_ROOT = tmp_path / "media"
    demo_dir = demo_cache_dir()
    build_demo(out_dir=demo_dir)
    out = io.StringIO()
    call_command("seed_api_examples", "--demo-dir", str(demo_dir), stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _operations() -> list[tuple[str, str]]:
    out = io.StringIO()
    call_command("spectacular", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    return [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "put", "delete"}
    ]


def _filled(path: str, codes: dict[str, Any]) -> str | None:
    """The path with the owner's seeded objects in it; None when the seed has no such object."""
    resource = path.split("/")[3]
    values = {
        "code": _first(codes.get(_RESOURCE_CODES.get(resource, ""))),
        "user_code": _first(codes.get("users")),
        "path": "manifest.json",
    }
    names = re.findall(r"{(\w+)}", path)
    if any(values.get(name) is None for name in names):
        return None
    return re.sub(r"{(\w+)}", lambda match: str(values[match.group(1)]), path)


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _token_for(user: Any, *, name: str) -> tuple[Any, str]:
    from accounts.tokens import api_token_create

    return api_token_create(user=user, name=name, expires_in_days=30)


def test_every_operation_refuses_missing_revoked_expired_and_deactivated_credentials(
    live_server: Any, seeded: dict[str, Any], stranger: Any
) -> None:
    from django.utils import timezone

    from accounts.models import ApiToken
    from accounts.tokens import api_token_revoke

    revoked, revoked_secret = _token_for(stranger, name="revoked")
    api_token_revoke(actor=stranger, token=revoked)
    expired, expired_secret = _token_for(stranger, name="expired")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    from django.contrib.auth import get_user_model

    gone = get_user_model().objects.create_user(username="gone_user", password="x-123456789")
    _gone_token, gone_secret = _token_for(gone, name="gone")
    gone.is_active = False
    gone.save()
    credentials = {
        "none": ({}, "credentials were not provided"),
        "revoked": ({"Authorization": f"Bearer {revoked_secret}"}, "revoked"),
        "expired": ({"Authorization": f"Bearer {expired_secret}"}, "expired"),
        "deactivated": ({"Authorization": f"Bearer {gone_secret}"}, "deactivated"),
    }
    operations = _operations()
    assert len(operations) >= 45
    failures = []
    for method, path in operations:
        # Paths whose object the seed has none of get an unknown code: the route still matches,
        # so authentication is what answers.
        url = live_server.url + (_filled(path, seeded["codes"]) or re.sub(r"{\w+}", _UNKNOWN, path))
        for name, (headers, words) in credentials.items():
            response = requests.request(method, url, headers=headers, timeout=30)
            error = (
                response.json().get("error", {}) if "json" in response.headers.get("Content-Type", "") else {}
            )
            if response.status_code != 401 or words not in error.get("message", ""):
                failures.append(f"{method} {path} [{name}]: {response.status_code} {response.text[:120]}")
    assert failures == []


def test_another_users_token_gets_404_on_every_operation_naming_the_owners_objects(
    live_server: Any, seeded: dict[str, Any], stranger: Any
) -> None:
    from audit.models import AuditEvent

    _token, secret = _token_for(stranger, name="nosy")
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    events_before = AuditEvent.objects.exclude(action__startswith="api_token.").count()
    checked, failures = 0, []
    for method, path in _operations():
        if "{" not in path:
            continue
        url = _filled(path, seeded["codes"])
        if url is None:
            continue
        response = requests.request(method, live_server.url + url, headers=headers, data="{}", timeout=30)
        checked += 1
        if response.status_code != 404 or response.json()["error"]["status"] != 404:
            failures.append(f"{method} {url}: {response.status_code} {response.text[:160]}")
    assert failures == [] and checked >= 30
    # Nothing the stranger sent changed anything (a refused request is not audited as a change).
    assert AuditEvent.objects.exclude(action__startswith="api_token.").count() == events_before
