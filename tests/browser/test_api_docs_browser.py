"""The API's interactive docs in headless Chromium: Swagger UI renders from our own static files
(no CDN, the Content-Security-Policy unchanged), lists every resource, and "Try it out" calls the
API with the browser's session.

Screenshot: test-artifacts/screens/api-docs.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import browser_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_docs_render_offline_and_try_it_out_calls_the_api(browser: Any, owner: Any) -> None:
    page = browser
    external: list[str] = []
    page.on(
        "request",
        lambda request: (
            external.append(request.url)
            if "localhost" not in request.url and "127.0.0.1" not in request.url
            else None
        ),
    )
    console_errors: list[str] = []
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    browser_login(page, owner)
    page.goto("/api/v1/docs/")
    page.wait_for_selector(".opblock-tag", timeout=30_000)
    tags = {text.strip().split("\n")[0] for text in page.locator(".opblock-tag").all_inner_texts()}
    assert {"classifiers", "videos", "analyses", "shares", "comparisons", "teams"} <= {
        t.lower() for t in tags
    }
    assert external == [] and not [e for e in console_errors if "Content Security Policy" in e]

    # Try the current user's endpoint from the page, with the session.
    me = page.locator("#operations-me-me_retrieve")
    me.locator(".opblock-summary").click()
    me.locator("button.try-out__btn").click()
    me.locator("button.execute").click()
    me.locator(".live-responses-table tbody .response-col_status").first.wait_for(timeout=15_000)
    assert "200" in me.locator(".live-responses-table tbody .response-col_status").first.inner_text()
    assert owner.username in me.locator(".live-responses-table .microlight").first.inner_text()
    screenshot(page, "api-docs")
