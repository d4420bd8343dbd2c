"""Small helpers of the API tests: JSON writes through a logged-in WebClient (its `post` sends a
form body), and the answer to anonymous requests."""

from __future__ import annotations

from typing import Any


def send_json(client: Any, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    """A JSON request with the session's CSRF header (as a browser's fetch() sends it)."""
    headers = {"X-CSRFToken": client.csrf_token(), "Referer": client.url("/"), **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return client.session.request(method, client.url(path), headers=headers, timeout=120, **kwargs)


def assert_anonymous_refused(response: Any) -> None:
    # 403 with session authentication alone; 401 once API tokens (WWW-Authenticate) are merged.
    assert response.status_code in (401, 403), response.text[:300]
    assert response.json()["error"]["status"] == response.status_code
