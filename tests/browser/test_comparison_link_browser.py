"""A saved comparison's share link in headless Chromium: its owner makes the link from the
comparison's page, and someone with no account opens it — read-only columns whose videos and
images load through the link's own views, no save, delete or layer controls.

Screenshots: test-artifacts/screens/comparison-link-panel.png, comparison-link-anonymous.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.compare.conftest import compare_results, published  # noqa: F401 - fixtures
from tests.conftest import browser_login, screenshot
from tests.web.test_analysis_pages import library, media_root  # noqa: F401 - fixtures
from tests.worker.conftest import demo  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_owner_makes_a_comparison_link_that_opens_read_only_without_an_account(
    browser: Any, _chromium: Any, live_server: Any, owner: Any, published: dict[str, Any]
) -> None:
    gradcam, plus = published["gradcam"], published["gradcampp"]
    page = browser
    browser_login(page, owner)
    page.goto(f"/compare/?a={gradcam.code}&a={plus.code}")
    page.fill("[data-testid=compare-title-input]", "Grad-CAM vs ++ for review")
    page.click("[data-testid=compare-save]")
    page.locator("[data-testid=comparison-links]").scroll_into_view_if_needed()
    page.fill("#link-label", "for the review")
    page.click("[data-testid=link-submit]")
    url = page.input_value("[data-testid=link-url]")
    page.go_back()
    page.reload()
    assert page.locator("[data-testid=comparison-links] [data-testid=link-row]").count() == 1
    screenshot(page, "comparison-link-panel")

    anonymous = _chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    try:
        visitor = anonymous.new_page()
        response = visitor.goto(url)
        assert response is not None and response.status == 200
        assert "Shared comparison (read-only)" in visitor.inner_text("main")
        assert visitor.locator("[data-testid=compare-column]").count() == 2
        assert (
            visitor.locator(
                "[data-testid=compare-save-form], [data-testid=compare-delete], [data-compare-layer]"
            ).count()
            == 0
        )
        visitor.wait_for_function(
            "() => [...document.querySelectorAll('video[data-compare-video]')].every(v => v.readyState >= 1)",
            timeout=30_000,
        )
        visitor.wait_for_function(
            "() => [...document.querySelectorAll('img[data-compare-image]')].every(i => i.complete && i.naturalWidth > 0 && i.src.includes('/s/'))"
        )
        screenshot(visitor, "comparison-link-anonymous")
    finally:
        anonymous.close()
