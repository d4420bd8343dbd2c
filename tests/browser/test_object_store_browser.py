"""The result page in Chromium when files come from an S3-compatible bucket by presigned
redirects (several machines): the heatmap videos and images load from the bucket's origin, which
the page's Content-Security-Policy names; without it the browser would refuse them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradcam_site.env import media_redirect_origins
from tests.conftest import browser_login, screenshot
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures
from tests.storage.runs_helpers import analysis_queue, published_library, run_as_worker
from tests.worker.conftest import demo  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VIDEOS_LOADED = "() => [...document.querySelectorAll('video[data-sync-video]')].every(v => v.readyState >= 2)"


def _policy_with(settings: Any, origins: list[str]) -> str:
    """The site's policy with the bucket's origin added where settings.py adds it."""
    sources = "".join(f" {origin}" for origin in origins)
    policy = str(settings.CONTENT_SECURITY_POLICY)
    return policy.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob:{sources}").replace(
        "media-src 'self' blob:", f"media-src 'self' blob:{sources}"
    )


def test_result_videos_and_images_load_from_the_bucket_through_presigned_redirects(
    browser: Any,
    owner: Any,
    demo: dict[str, Any],  # noqa: F811
    media_bucket: str,  # noqa: F811
    object_store: ObjectStore,  # noqa: F811
    settings: Any,
    tmp_path: Path,
) -> None:
    library = published_library(owner=owner, demo=demo, settings=settings)
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message

    page = browser
    refused: list[str] = []
    page.on(
        "console",
        lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None,
    )
    from_bucket: list[str] = []
    page.on(
        "response",
        lambda response: (
            from_bucket.append(response.url) if response.url.startswith(object_store.endpoint_url) else None
        ),
    )

    # Without the bucket's origin in the policy, the browser refuses the redirected media.
    browser_login(page, owner)
    page.goto(f"/analyses/{analysis.code}/")
    page.wait_for_timeout(2000)
    assert page.evaluate(
        "() => [...document.querySelectorAll('video[data-sync-video]')].some(v => v.readyState < 2)"
    )
    assert refused, "no Content-Security-Policy refusal was reported"

    settings.CONTENT_SECURITY_POLICY = _policy_with(
        settings,
        media_redirect_origins(
            delivery="presigned", endpoint_url=object_store.endpoint_url, region="us-east-1"
        ),
    )
    refused.clear()
    page.goto(f"/analyses/{analysis.code}/")
    page.wait_for_function(VIDEOS_LOADED, timeout=30_000)
    page.click("[data-testid=tab-images]")
    images = page.locator("img.heatmap-img[src]")
    assert images.count() > 0
    images.first.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#tab-images img.heatmap-img[src]')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    assert refused == []
    assert any("X-Amz-Signature=" in url for url in from_bucket)
    screenshot(page, "analysis-result-from-bucket")
