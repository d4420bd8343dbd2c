"""API tokens in headless Chromium: reached from the account menu, created (the secret shown
once, with a working copy button), then revoked after confirming."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_copy_and_revoke_a_token(
    browser: Any, owner: Any, browser_login: Any, screenshot: Any
) -> None:
    page = browser
    browser_login(page, owner)
    page.click("[data-testid=account-menu]")
    page.click("[data-testid=nav-api-tokens]")
    page.wait_for_url(re.compile(r".*/accounts/tokens/$"))
    expect(page.locator("[data-testid=no-tokens]")).to_be_visible()
    screenshot(page, "api-tokens-empty")

    page.fill("input[name=name]", "nightly CI")
    page.fill("input[name=expires_in_days]", "30")
    page.click("#api-token-form button[type=submit]")
    secret_box = page.locator("[data-testid=token-secret]")
    expect(secret_box).to_have_value(re.compile(r"^gcs_[A-Za-z0-9_-]{43}$"))
    secret = secret_box.input_value()
    copy = page.locator("button[data-copy-from]")
    copy.click()
    expect(copy).to_have_text("Copied")
    screenshot(page, "api-token-created")

    page.click("text=Back to your tokens")
    row = page.locator("#api-token-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("nightly CI")
    expect(row).to_contain_text(f"gcs_{secret[4:12]}")
    assert secret not in page.content()
    screenshot(page, "api-tokens-list")

    questions: list[str] = []

    def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    row.locator("button", has_text="Revoke").click()
    expect(page.locator(".message-success")).to_contain_text("API token “nightly CI” revoked")
    expect(row).to_have_attribute("data-state", "revoked")
    expect(row.locator("button", has_text="Revoke")).to_have_count(0)
    assert questions and "nightly CI" in questions[0]
    assert ApiToken.objects.get(user=owner).revoked_at is not None
    screenshot(page, "api-tokens-revoked")


def test_a_refused_form_keeps_the_page_usable_on_a_phone(
    browser: Any, owner: Any, browser_login: Any, screenshot: Any
) -> None:
    page = browser
    page.set_viewport_size({"width": 390, "height": 800})
    browser_login(page, owner)
    page.goto("/accounts/tokens/")
    page.fill("input[name=name]", "laptop")
    # The browser's own number bounds would stop the form: send what a hand-made request could.
    page.eval_on_selector(
        "input[name=expires_in_days]", "el => { el.removeAttribute('max'); el.value = '400'; }"
    )
    page.click("#api-token-form button[type=submit]")
    expect(page.locator(".has-error")).to_contain_text("less than or equal to 365")
    assert ApiToken.objects.count() == 0
    screenshot(page, "api-tokens-error-phone")
