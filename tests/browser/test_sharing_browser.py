"""Sharing in headless Chromium: the owner shares an analysis (with its inputs) from its Access
panel, makes a share link, and someone with no account opens it and plays the result; the
recipient finds it under "Shared with me", whose count then clears.

Screenshots go to test-artifacts/screens/sharing-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from analyses.models import Share, ShareLink
from tests.conftest import browser_login, screenshot
from tests.web.test_analysis_pages import engine_results, library, media_root  # noqa: F401 - fixtures
from tests.web.test_sharing import carol, private_analysis  # noqa: F401 - fixtures
from tests.worker.conftest import demo  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_owner_shares_and_makes_a_link_that_opens_the_result_without_an_account(
    browser: Any, _chromium: Any, live_server: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    page = browser
    browser_login(page, owner)
    page.goto(f"/analyses/{private_analysis.code}/")
    panel = page.locator("[data-testid=access-panel]")
    panel.scroll_into_view_if_needed()

    # Without its inputs, the share is refused in words; with them it goes through.
    page.fill("#share-username", "carol")
    page.click("[data-testid=share-submit]")
    assert "carol cannot see the" in page.locator(".messages").inner_text()
    page.fill("#share-username", "carol")
    page.check("input[name=with_inputs]")
    page.click("[data-testid=share-submit]")
    assert "Shared read-only with carol" in page.locator(".messages").inner_text()
    assert page.locator("[data-testid=share-row]").count() == 1
    assert Share.objects.filter(user=carol).count() == 3

    page.fill("#link-label", "for the review")
    page.fill("#link-days", "3")
    page.click("[data-testid=link-submit]")
    url = page.input_value("[data-testid=link-url]")
    assert re.search(r"/s/[A-Za-z0-9_-]{40,}/$", url)
    screenshot(page, "sharing-link-created")
    page.goto(f"/analyses/{private_analysis.code}/")
    page.locator("[data-testid=access-panel]").scroll_into_view_if_needed()
    assert page.locator("[data-testid=link-row]").count() == 1
    screenshot(page, "sharing-access-panel")

    # Someone with no account opens the link: the result, its images and videos load.
    anonymous = _chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    try:
        visitor = anonymous.new_page()
        visitor.goto(url)
        assert "Shared result (read-only)" in visitor.inner_text("main")
        assert visitor.locator("[data-testid=predicted-label]").inner_text().strip()
        # The frame player's image (served through the link) has loaded with real pixels.
        visitor.wait_for_function(
            "() => { const i = document.images[0]; return i && i.src.includes('/s/') && i.complete && i.naturalWidth > 0; }"
        )
        visitor.wait_for_function(
            "() => [...document.querySelectorAll('video')].every(v => v.readyState >= 1)", timeout=30_000
        )
        assert visitor.locator("[data-testid=share-form]").count() == 0
        screenshot(visitor, "sharing-link-anonymous")
    finally:
        anonymous.close()
    assert ShareLink.objects.get().use_count == 1

    # The recipient sees the count in the navigation, then the items; the count clears.
    recipient = _chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    try:
        carol_page = recipient.new_page()
        browser_login(carol_page, carol)
        carol_page.goto("/analyses/")
        assert carol_page.inner_text("[data-testid=nav-shared-count]").strip() == "3"
        carol_page.click("[data-testid=nav-shared]")
        assert carol_page.locator("[data-testid=shared-analyses] a").count() == 1
        screenshot(carol_page, "sharing-shared-with-me")
        carol_page.goto("/analyses/")
        assert carol_page.locator("[data-testid=nav-shared-count]").count() == 0
    finally:
        recipient.close()


def test_a_revoked_link_shows_a_not_found_page(
    browser: Any, owner: Any, private_analysis: Any, media_root: Path
) -> None:
    page = browser
    browser_login(page, owner)
    page.goto(f"/analyses/{private_analysis.code}/")
    page.click("[data-testid=link-submit]")
    url = page.input_value("[data-testid=link-url]")
    page.goto(f"/analyses/{private_analysis.code}/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=revoke-link]")
    assert "Share link revoked" in page.locator(".messages").inner_text()
    response = page.goto(url)
    assert response is not None and response.status == 404
