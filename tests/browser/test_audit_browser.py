"""The audit page in headless Chromium: reach it from the navigation, filter by action with the
form, see a deleted analysis's tombstone with its hashes, and export the filtered CSV.
Screenshots: test-artifacts/screens/audit.png and audit-filtered.png.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import browser_login, screenshot
from tests.web.audit_factories import RAW_MAPS_BYTES, audit_world, succeeded_analysis

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_audit_page_filters_by_action_and_shows_a_tombstone_in_the_browser(
    browser: Any, owner: Any, member: Any, stranger: Any, team: Any, settings: Any, tmp_path: Path
) -> None:
    from accounts.services import team_member_add
    from analyses.runs.services import analysis_delete, analysis_record_read

    settings.MEDIA_ROOT = tmp_path
    world = audit_world(owner=owner, member=member, stranger=stranger, team=team, media_root=tmp_path)
    analysis_record_read(user=member, analysis=world["analysis"], action="analysis.viewed")
    analysis_record_read(
        user=member, analysis=world["analysis"], action="analysis.zip_downloaded", file_name="analysis.zip"
    )
    team_member_add(actor=owner, team=team, username=stranger.get_username())
    old = succeeded_analysis(
        owner=owner,
        team=None,
        classifier=world["kinetics"],
        video=world["street"],
        media_root=tmp_path,
        title="old",
    )
    analysis_delete(user=owner, analysis=old)

    page = browser
    browser_login(page, owner)
    page.click("[data-testid=nav-audit]")
    page.wait_for_url("**/audit/")
    rows = page.locator("[data-testid=audit-row]")
    assert rows.count() == 4
    assert "1–4 of 4 events" in page.locator("[data-testid=audit-count]").inner_text()
    tombstone = page.locator("[data-testid=tombstone]")
    assert tombstone.count() == 1 and "deleted by olivia_owner" in tombstone.inner_text()
    raw_sha = hashlib.sha256(RAW_MAPS_BYTES).hexdigest()
    assert raw_sha in page.locator(".audit-tombstone-row").inner_text()
    screenshot(page, "audit")

    page.fill("input[name=action]", "analysis.")
    page.fill("input[name=actor]", member.get_username())
    page.click("[data-testid=apply-filters]")
    page.wait_for_url("**/audit/?*action=analysis.*")
    assert sorted(rows.evaluate_all("rows => rows.map(row => row.dataset.action)")) == [
        "analysis.viewed",
        "analysis.zip_downloaded",
    ]
    assert page.locator("[data-testid=object-link]").count() == 2  # the analysis still exists
    assert page.locator("[data-testid=clear-filters]").is_visible()
    screenshot(page, "audit-filtered")

    with page.expect_download() as download_info:
        page.click("[data-testid=audit-export]")
    exported = Path(download_info.value.path()).read_text(encoding="utf-8")
    actions = sorted(row["action"] for row in csv.DictReader(io.StringIO(exported)))
    assert actions == ["analysis.viewed", "analysis.zip_downloaded"]
