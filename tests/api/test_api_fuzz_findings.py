"""What schemathesis (.ci/api_fuzz.py) found in the API's foundation, pinned over real HTTP: an
unmatched /api/v1/ address answers the JSON 404 (not the site's HTML page), OPTIONS never
answers 500, and a page number out of range is a 404 the schema declares."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_malformed_code_or_unknown_api_path_is_the_json_404_not_the_html_page(web: Any, owner: Any) -> None:
    client = web(owner)
    for path in (
        "/api/v1/classifiers/null,null/",
        "/api/v1/classifiers/not-a-uuid/file/",
        "/api/v1/no-such-resource/",
        "/api/v1/me",  # no trailing slash: not a redirect that would drop a POST body
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"].startswith("application/json"), path
        assert response.json() == {"error": {"status": 404, "code": "not_found", "message": "Not found."}}
    # A script with a token has no CSRF cookie: its POST gets the same 404, not CSRF's HTML 403.
    response = web().session.post(client.url("/api/v1/classifiers/null/"), json={}, timeout=30)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_options_on_a_view_validated_by_a_page_form_answers_without_a_server_error(
    web: Any, owner: Any
) -> None:
    response = web(owner).session.options(web(owner).url("/api/v1/classifiers/"), timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["name"] and "actions" not in response.json()


def test_a_page_out_of_range_is_a_404_in_the_one_shape_and_declared_in_the_schema(
    web: Any, owner: Any
) -> None:
    client = web(owner)
    for page in ("0", "2", "-1", "abc"):
        response = client.get(f"/api/v1/classifiers/?page={page}")
        assert response.status_code == 404, page
        assert response.json()["error"]["message"] == "Invalid page."
    schema = client.get("/api/v1/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}).json()
    listing = schema["paths"]["/api/v1/classifiers/"]["get"]
    assert listing["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    page = next(parameter for parameter in listing["parameters"] if parameter["name"] == "page")
    assert page["schema"]["minimum"] == 1
