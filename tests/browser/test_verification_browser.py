"""Verify in headless Chromium with a REAL django-q2 cluster and the real engine: the provenance
panel of a finished analysis, a click on Verify, the progress, and the verdict on the page.

Screenshots go to test-artifacts/screens/verification-*.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import browser_login, screenshot
from tests.worker.conftest import (  # noqa: F401 - fixtures reused from the worker tests
    demo,
    demo_classifier,
    demo_video_entry,
    make_video,
    media_root,
    module_media_root,
    start_cluster,
    wait_final,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

VERIFY_TIMEOUT_MS = 300_000


def test_clicking_verify_reruns_the_analysis_and_shows_an_identical_verdict(
    browser: Any, owner: Any, demo: dict[str, Any], demo_classifier: Any, media_root: Path, start_cluster: Any
) -> None:
    from analyses.runs.services import analysis_create
    from audit.models import AuditEvent

    entry = demo_video_entry(demo, mislabelled=True)
    video = make_video(
        owner=owner,
        video_path=Path(entry["path"]),
        media_root=media_root,
        expected_class=entry["labelled_class"],
    )
    cluster = start_cluster()
    analysis = analysis_create(
        user=owner, classifier=demo_classifier, video=video, expected_class=entry["labelled_class"], params={}
    )
    wait_final(analysis, timeout=240, cluster=cluster)
    assert analysis.status == "succeeded", analysis.error_message

    page = browser
    browser_login(page, owner)
    page.goto(f"/analyses/{analysis.code}/#verification")
    provenance = page.locator("[data-testid=provenance]")
    raw_maps = [record for record in analysis.manifest["files"] if record["role"] == "raw_maps"]
    for record in raw_maps:
        assert record["sha256"] in provenance.inner_text()
    assert page.locator("[data-testid=no-verifications]").is_visible()
    _screenshot_from_top(page, "verification-provenance")

    page.click("[data-testid=verify-button]")
    page.wait_for_selector("[data-testid=verification-progress]")
    assert "Verification queued" in page.locator(".messages").inner_text()
    _screenshot_from_top(page, "verification-running")

    # The page polls the status and reloads itself when the verdict is in.
    page.wait_for_selector("[data-testid=verdict-0]", timeout=VERIFY_TIMEOUT_MS)
    verdict = page.locator("[data-testid=verdict-0]")
    assert verdict.locator("[data-testid=verdict-outcome]").text_content().strip() == "identical", (
        cluster.log()
    )
    assert "byte-for-byte" in verdict.locator("[data-testid=verdict-summary]").inner_text()
    assert "asked by olivia_owner" in verdict.inner_text()
    assert page.locator("[data-testid=verify-button]").is_visible()  # may verify again
    _screenshot_from_top(page, "verification-verdict")
    assert AuditEvent.objects.filter(action="analysis.verified", target_code=analysis.code).count() == 1

    # ---- the stored maps of one layer changed behind the platform's back: verify again
    record = raw_maps[0]
    _scale_stored_raw_map(media_root / analysis.results_dir / record["path"], factor=1.5)
    page.click("[data-testid=verify-button]")
    page.wait_for_selector("[data-testid=verification-progress]")
    page.wait_for_selector("[data-testid=verdict-1]", timeout=VERIFY_TIMEOUT_MS)
    newest = page.locator("[data-testid=verdict-0]")
    assert newest.locator("[data-testid=verdict-outcome]").text_content().strip() == "differs", cluster.log()
    table = newest.locator("[data-testid=verdict-layers]").inner_text()
    assert record["layer"] in table and "stored file changed" in table.lower() and "0.333" in table
    assert (
        page.locator("[data-testid=verdict-1] [data-testid=verdict-outcome]").text_content().strip()
        == "identical"
    )
    _screenshot_from_top(page, "verification-differs")


def _scale_stored_raw_map(path: Path, *, factor: float) -> None:
    import numpy as np

    from gradcam3d.manifest import save_npz_deterministic

    with np.load(path, allow_pickle=False) as maps:
        arrays = {name: maps[name] for name in maps.files}
    arrays["raw_class0"] = arrays["raw_class0"] * np.float32(factor)
    save_npz_deterministic(path, arrays)


def _screenshot_from_top(page: Any, name: str) -> None:
    # A full-page screenshot taken while scrolled draws the sticky header mid-page.
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, name)
