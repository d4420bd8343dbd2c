"""The analysis history in headless Chromium: open it, apply two filters and a search, sort,
page through the URL it builds. Screenshots: test-artifacts/screens/history.png and
history-filtered.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import browser_login, screenshot
from tests.web.history_factories import history_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _row_titles(page: Any) -> list[str]:
    return page.locator("[data-testid=analysis-table] tbody tr td.history-title > a").all_inner_texts()


def _give_poster(video: Any, media_root: Path) -> None:
    """A real JPEG poster (a colour gradient) for `video`, where the poster view serves it from."""
    import cv2
    import numpy as np

    image = np.zeros((90, 160, 3), dtype=np.uint8)
    image[..., 0] = np.linspace(40, 220, 160, dtype=np.uint8)[None, :]
    image[..., 1] = np.linspace(60, 160, 90, dtype=np.uint8)[:, None]
    name = f"videos/{video.code.hex}-poster.jpg"
    (media_root / "videos").mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    (media_root / name).write_bytes(data.tobytes())
    type(video).objects.filter(pk=video.pk).update(poster=name)


def test_history_filters_search_and_sort_in_the_browser(
    browser: Any, owner: Any, member: Any, stranger: Any, team: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    world = history_world(owner=owner, member=member, stranger=stranger, team=team)
    _give_poster(world["videos"]["street"], tmp_path)
    page = browser
    browser_login(page, owner)
    page.goto("/analyses/")
    assert page.locator("[data-testid=analysis-table] tbody tr").count() == 7
    page.wait_for_function(
        "() => [...document.images].every(image => image.complete && image.naturalWidth > 0)"
    )
    assert page.locator("img.history-thumb").count() == 2  # the two analyses of "street"
    assert "1–7 of 7 analyses" in page.locator("[data-testid=history-count]").inner_text()
    screenshot(page, "history")

    # Two filters and a search, applied with the form's own button.
    page.select_option("select[name=classifier]", str(world["classifiers"]["kinetics"].code))
    page.select_option("select[name=status]", "succeeded")
    page.fill("[data-testid=history-search]", "walk")
    page.click("[data-testid=apply-filters]")
    page.wait_for_url(re.compile(r".*\?(?=.*classifier=)(?=.*status=succeeded)(?=.*q=walk).*"))
    assert "video=" not in page.url and "owner=" not in page.url  # only the filters in force
    assert sorted(_row_titles(page)) == ["team-correct-walk", "team-wrong-run"]
    assert "matching the filters" in page.locator("[data-testid=history-count]").inner_text()

    # Sort by confidence, least confident first: the filters stay.
    page.select_option("select[name=sort]", "confidence")
    page.click("[data-testid=apply-filters]")
    page.wait_for_url(re.compile(r".*sort=confidence.*"))
    assert "status=succeeded" in page.url and "q=walk" in page.url
    assert _row_titles(page) == ["team-wrong-run", "team-correct-walk"]
    assert page.input_value("[data-testid=history-search]") == "walk"
    assert page.input_value("select[name=status]") == "succeeded"
    screenshot(page, "history-filtered")

    # The URL is the bookmark: opening it again gives the same view.
    bookmarked = page.url
    page.goto("/analyses/")
    page.goto(bookmarked)
    assert _row_titles(page) == ["team-wrong-run", "team-correct-walk"]

    # Clear brings everything back.
    page.click("[data-testid=clear-filters]")
    page.wait_for_url(re.compile(r".*/analyses/$"))
    assert page.locator("[data-testid=analysis-table] tbody tr").count() == 7
