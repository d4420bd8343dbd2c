"""Small helpers of the API tests: JSON writes through a logged-in WebClient (its `post` sends a
form body), and the answer to anonymous requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def send_json(client: Any, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    """A JSON request with the session's CSRF header (as a browser's fetch() sends it)."""
    headers = {"X-CSRFToken": client.csrf_token(), "Referer": client.url("/"), **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return client.session.request(method, client.url(path), headers=headers, timeout=120, **kwargs)


def assert_anonymous_refused(response: Any) -> None:
    """No credentials: 401 with the bearer challenge, in the one error shape."""
    assert response.status_code == 401, response.text[:300]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["status"] == 401


@contextmanager
def throttle_rate(settings: Any, scope: str, rate: str) -> Iterator[None]:
    """Run with one DRF throttle scope at `rate` (DRF binds the rates to its throttle class at
    import, so the class attribute is swapped too) and an empty throttle cache around it."""
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], scope: rate}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = rates
    cache.clear()
    try:
        yield
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original
        cache.clear()
