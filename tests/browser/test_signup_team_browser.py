"""Sign up, create a team and add a member in headless Chromium, with screenshots."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import Team, TeamMembership, TeamRole
from tests.conftest import PASSWORD, browser_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signup_then_create_a_team_and_add_a_member(browser, member) -> None:
    page = browser
    page.goto("/accounts/teams/")
    # Not logged in: sent to the login page, which links to sign-up.
    assert "/accounts/login/" in page.url
    screenshot(page, "accounts-login")
    page.get_by_role("link", name="Create an account").click()

    page.fill("input[name=username]", "nina")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD + "-typo")
    page.click("#signup-form button[type=submit]")
    expect(page.locator(".errorlist")).to_contain_text("password fields didn")
    screenshot(page, "accounts-signup-error")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("#signup-form button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/signup/" not in url)
    expect(page.locator("[data-testid=account-menu]")).to_contain_text("nina")

    page.locator(".site-nav").get_by_role("link", name="Teams").click()
    expect(page.locator("h1")).to_have_text("Teams")
    screenshot(page, "teams-empty")
    page.get_by_role("link", name="Create a team").click()
    page.fill("input[name=name]", "Vision Lab")
    page.fill("textarea[name=description]", "Action recognition on surveillance clips")
    screenshot(page, "team-create")
    page.click("#team-create-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("Vision Lab")
    expect(page.locator(".message-success")).to_contain_text("You are its owner")

    page.fill("#member-add-form input[name=username]", "no_such_person")
    page.click("#member-add-form button[type=submit]")
    expect(page.locator("#member-add-form .errorlist")).to_contain_text("There is no user named")
    screenshot(page, "team-add-member-error")

    page.fill("#member-add-form input[name=username]", member.username)
    page.select_option("#member-add-form select[name=role]", "member")
    page.click("#member-add-form button[type=submit]")
    row = page.locator(f"#member-table tr[data-username={member.username}]")
    expect(row).to_contain_text("member")
    screenshot(page, "team-detail")

    team = Team.objects.get(name="Vision Lab")
    assert TeamMembership.objects.get(team=team, user__username="nina").role == TeamRole.OWNER
    assert TeamMembership.objects.get(team=team, user=member).role == TeamRole.MEMBER

    # The account menu offers password change and a POST log-out.
    page.click("[data-testid=account-menu]")
    expect(page.locator(".account-menu-panel")).to_be_visible()
    screenshot(page, "account-menu")
    page.click("#logout-form button")
    page.wait_for_url(lambda url: "/accounts/login/" in url)


def test_team_page_on_a_phone_and_the_member_view(browser, team, member) -> None:
    page = browser
    page.set_viewport_size({"width": 390, "height": 800})
    browser_login(page, member)
    page.goto(f"/accounts/teams/{team.code}/")
    expect(page.locator("h1")).to_have_text("Vision Lab")
    # Members see the roster but no management controls.
    expect(page.locator("#member-add-form")).to_have_count(0)
    expect(page.locator(".site-nav")).to_be_hidden()
    page.click("[data-nav-toggle]")
    expect(page.locator(".site-nav")).to_be_visible()
    screenshot(page, "team-detail-phone-member")
