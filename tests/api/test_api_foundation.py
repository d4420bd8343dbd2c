"""The API's shared behaviour over real HTTP: the one error shape, authentication answers,
the offline schema and docs, and the current user."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def assert_error_shape(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["status"] == status and error["code"] and error["message"]
    return error


def test_anonymous_requests_get_a_json_error_not_a_login_redirect(web: Any) -> None:
    for path in (
        "/api/v1/me/",
        "/api/v1/classifiers/",
        "/api/v1/classifiers/00000000-0000-0000-0000-000000000000/",
    ):
        error = assert_error_shape(web().get(path), 401)
        assert "credentials were not provided" in error["message"]


def test_me_lists_the_user_and_their_teams_with_their_role(
    web: Any, owner: Any, member: Any, team: Any
) -> None:
    response = web(member).get("/api/v1/me/")
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == member.username
    assert body["teams"] == [{"code": str(team.code), "name": team.name, "role": "member"}]


def test_unknown_codes_and_objects_of_others_are_404_in_the_one_shape(web: Any, owner: Any) -> None:
    error = assert_error_shape(
        web(owner).get("/api/v1/classifiers/6f1d2c3e-0000-4000-8000-000000000000/"), 404
    )
    assert error["code"] == "not_found"
    assert web(owner).get("/api/v1/classifiers/not-a-uuid/").status_code == 404


def test_the_schema_and_offline_docs_are_served_without_any_cdn(web: Any, owner: Any) -> None:
    schema = web(owner).get("/api/v1/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert "/api/v1/classifiers/" in schema.json()["paths"]
    docs = web(owner).get("/api/v1/docs/")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text
    for src in __import__("re").findall(r'src="([^"]+)"', docs.text):
        assert web(owner).get(src).status_code == 200, src


def test_a_personal_token_authenticates_script_requests_without_a_session_or_csrf(
    live_server: Any, owner: Any
) -> None:
    import requests

    from accounts.tokens import api_token_create, api_token_revoke

    token, secret = api_token_create(user=owner, name="ci", expires_in_days=None)
    headers = {"Authorization": f"Bearer {secret}"}
    response = requests.get(f"{live_server.url}/api/v1/me/", headers=headers, timeout=10)
    assert response.status_code == 200 and response.json()["username"] == owner.username
    api_token_revoke(actor=owner, token=token)
    response = requests.get(f"{live_server.url}/api/v1/me/", headers=headers, timeout=10)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["message"] == "This API token was revoked."


def test_the_schema_validates_with_no_warning_and_describes_every_api_route() -> None:
    """`manage.py spectacular --validate --fail-on-warn`, and every /api/v1/ route in it."""
    import io

    import yaml
    from django.core.management import call_command
    from django.urls import get_resolver

    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    operations = [op for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)]
    assert len({op["operationId"] for op in operations}) == len(operations)
    for operation in operations:
        assert operation.get("responses"), operation["operationId"]
        errors = [status for status in operation["responses"] if str(status).startswith(("4", "5"))]
        assert errors, f"{operation['operationId']} declares no error response"
        for status in errors:
            ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/Error"), (operation["operationId"], status, ref)
    routes = set(_api_routes(get_resolver().url_patterns, prefix=""))
    missing = {route for route in routes if route not in schema["paths"]}
    assert routes and missing == set()


def _api_routes(patterns: list[Any], *, prefix: str) -> Any:
    """Every /api/v1/ route (but the schema, the docs and the catch-all 404) in OpenAPI form."""
    import re

    from django.urls import URLResolver

    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if route.startswith("api/v1/") or "api/v1/".startswith(route) or not prefix:
                yield from _api_routes(pattern.url_patterns, prefix=route)
            continue
        if not route.startswith("api/v1/") or route.endswith(("schema/", "docs/", "^")):
            continue
        yield "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def test_a_body_refused_before_any_view_answers_in_the_api_error_shape(web: Any, owner: Any) -> None:
    import requests

    client = web(owner)
    too_big = requests.post(
        client.url("/api/v1/comparisons/"),
        data=b"x" * (5 * 1024 * 1024),
        headers={"Content-Type": "application/json", "X-CSRFToken": client.csrf_token()},
        cookies=client.session.cookies,
        timeout=30,
    )
    error = assert_error_shape(too_big, 413)
    assert error["code"] == "too_large" and "accepts at most" in error["message"]
