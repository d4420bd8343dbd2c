"""Shares and share links through the API over real HTTP, for the owner, a team member (read-only:
403 on writes), a user it is shared with, another user (404) and anonymous: the same rules and
refusals as the pages' "Access" panel, nothing stored on a refusal, a revoked share or link ending
access at once. Results are REAL engine output (tests/web/test_analysis_pages.py's fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analyses.models import Analysis, Classifier, Share, ShareLink, Video
from audit.models import AuditEvent
from tests.web.test_analysis_pages import (  # noqa: F401 - fixtures
    engine_results,
    library,
    media_root,
    publish_result,
)
from tests.worker.conftest import demo  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def carol(db: None) -> Any:
    from tests.conftest import _make_user

    return _make_user(username="carol", email="carol@example.com")


@pytest.fixture
def team_analysis(
    owner: Any, team: Any, library: dict[str, Any], engine_results: dict[str, Any], media_root: Path
) -> Any:
    """A finished analysis of `owner` in `team` (so `member` sees it, read-only)."""
    return publish_result(
        owner=owner,
        team=team,
        classifier=library["classifier"],
        video=library["wrong_video"],
        result=engine_results["wrong"],
        media_root=media_root,
    )


@pytest.fixture
def private_analysis(team_analysis: Any, library: dict[str, Any]) -> Any:
    """The same analysis, its inputs and itself the owner's alone."""
    Classifier.objects.filter(pk=library["classifier"].pk).update(team=None)
    Video.objects.filter(pk=library["wrong_video"].pk).update(team=None)
    Analysis.objects.filter(pk=team_analysis.pk).update(team=None)
    team_analysis.refresh_from_db()
    return team_analysis


def delete(client: Any, path: str) -> Any:
    return client.session.delete(
        client.url(path), headers={"X-CSRFToken": client.csrf_token(), "Referer": client.url("/")}
    )


def share_body(analysis: Any, **changes: Any) -> dict[str, Any]:
    return {"target_type": "analysis", "target": str(analysis.code), **changes}


# --------------------------------------------------------------------------- shares
def test_anonymous_gets_no_sharing_endpoint(web: Any, team_analysis: Any, owner: Any) -> None:
    share = Share.objects.create(analysis=team_analysis, team=None, user=owner, created_by=owner)
    client = web()
    # No credentials: 401 (with WWW-Authenticate: Bearer), in the one error shape.
    for response in (
        client.get("/api/v1/shares/"),
        client.get(f"/api/v1/shares/{share.code}/"),
        client.post("/api/v1/shares/", json=share_body(team_analysis, username="carol")),
        client.get("/api/v1/share-links/"),
        client.post("/api/v1/share-links/", json=share_body(team_analysis)),
    ):
        assert response.status_code == 401
    assert Share.objects.count() == 1 and ShareLink.objects.count() == 0


def test_owner_shares_an_analysis_and_its_inputs_with_a_user_who_then_lists_them(
    web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    response = web(owner).post(
        "/api/v1/shares/", json=share_body(private_analysis, username="carol", with_inputs=True)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message"] == "Shared read-only with carol."
    assert {share["target"]["type"] for share in body["shares"]} == {"analysis", "classifier", "video"}
    assert all(
        share["user"] == {"username": "carol"} and share["role"] == "viewer" for share in body["shares"]
    )
    assert Share.objects.filter(user=carol).count() == 3
    assert AuditEvent.objects.filter(action="share.created").count() == 3
    again = web(owner).post("/api/v1/shares/", json=share_body(private_analysis, username="carol"))
    assert again.status_code == 200
    assert again.json() == {"message": "It was shared with them already.", "shares": []}
    listed = web(carol).get("/api/v1/shares/")
    assert listed.status_code == 200
    assert listed.json()["count"] == 3
    analysis_share = next(s for s in body["shares"] if s["target"]["type"] == "analysis")
    detail = web(carol).get(f"/api/v1/shares/{analysis_share['code']}/")
    assert detail.status_code == 200
    assert detail.json()["can_revoke"] is False


def test_sharing_with_someone_who_cannot_see_the_inputs_is_refused_with_the_pages_words(
    web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    response = web(owner).post("/api/v1/shares/", json=share_body(private_analysis, username="carol"))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("carol cannot see the model")
    assert "Tick “also share its model and video”" in message
    assert Share.objects.count() == 0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"username": "carol", "team": "TEAM"}, "Choose either a user or a team to share with."),
        ({}, "Choose either a user or a team to share with."),
        ({"username": "nobody_at_all"}, "There is no active user called “nobody_at_all”."),
        ({"username": "olivia_owner"}, "You cannot share with yourself."),
        ({"team": "6f1d2c3e-0000-4000-8000-000000000000"}, "You can share only with a team you belong to."),
    ],
)
def test_bad_recipients_are_refused_and_nothing_is_stored(
    web: Any, owner: Any, team: Any, carol: Any, private_analysis: Any, changes: dict[str, Any], words: str
) -> None:
    if changes.get("team") == "TEAM":
        changes["team"] = str(team.code)
    response = web(owner).post(
        "/api/v1/shares/", json=share_body(private_analysis, with_inputs=True, **changes)
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == words
    assert Share.objects.count() == 0


def test_bad_targets_are_refused(
    web: Any, owner: Any, stranger: Any, carol: Any, private_analysis: Any
) -> None:
    response = web(owner).post(
        "/api/v1/shares/",
        json={"target_type": "planet", "target": str(private_analysis.code), "username": "carol"},
    )
    assert response.status_code == 400
    assert "target_type" in response.json()["error"]["fields"]
    unknown = share_body(private_analysis, username="carol")
    unknown["target"] = "6f1d2c3e-0000-4000-8000-000000000000"
    assert web(owner).post("/api/v1/shares/", json=unknown).status_code == 404
    # Someone who cannot see it: 404, as if it did not exist.
    response = web(stranger).post("/api/v1/shares/", json=share_body(private_analysis, username="carol"))
    assert response.status_code == 404
    assert Share.objects.count() == 0


def test_a_team_member_reads_but_may_neither_share_nor_revoke(
    web: Any, owner: Any, member: Any, carol: Any, team_analysis: Any
) -> None:
    response = web(member).post("/api/v1/shares/", json=share_body(team_analysis, username="carol"))
    assert response.status_code == 403
    assert Share.objects.count() == 0
    made = web(owner).post(
        "/api/v1/shares/", json=share_body(team_analysis, username="carol", with_inputs=True)
    )
    assert made.status_code == 201, made.text
    code = next(s["code"] for s in made.json()["shares"] if s["target"]["type"] == "analysis")
    assert web(member).get(f"/api/v1/shares/{code}/").status_code == 200
    response = delete(web(member), f"/api/v1/shares/{code}/")
    assert response.status_code == 403
    assert "can revoke the share" in response.json()["error"]["message"]
    assert Share.objects.filter(code=code).exists()
    # Not made for them, not theirs to manage: not in their list.
    assert web(member).get("/api/v1/shares/").json()["count"] == 0
    assert web(owner).get("/api/v1/shares/").json()["count"] == 3  # the analysis and its two inputs


def test_a_stranger_gets_404_for_a_share(
    web: Any, owner: Any, stranger: Any, carol: Any, private_analysis: Any
) -> None:
    share = Share.objects.create(analysis=private_analysis, user=carol, created_by=owner)
    assert web(stranger).get(f"/api/v1/shares/{share.code}/").status_code == 404
    assert delete(web(stranger), f"/api/v1/shares/{share.code}/").status_code == 404
    assert web(stranger).get("/api/v1/shares/").json()["count"] == 0
    assert Share.objects.filter(pk=share.pk).exists()


def test_revoking_a_share_ends_access_through_the_api_too(
    web: Any, owner: Any, carol: Any, private_analysis: Any, library: dict[str, Any]
) -> None:
    classifier = library["classifier"]
    made = web(owner).post(
        "/api/v1/shares/",
        json={"target_type": "classifier", "target": str(classifier.code), "username": "carol"},
    )
    assert made.status_code == 201, made.text
    code = made.json()["shares"][0]["code"]
    assert web(carol).get(f"/api/v1/classifiers/{classifier.code}/").status_code == 200
    response = delete(web(owner), f"/api/v1/shares/{code}/")
    assert response.status_code == 200
    assert response.json()["message"].startswith("Share revoked")
    assert web(carol).get(f"/api/v1/classifiers/{classifier.code}/").status_code == 404
    assert web(carol).get(f"/api/v1/shares/{code}/").status_code == 404
    assert AuditEvent.objects.filter(action="share.revoked").count() == 1


# --------------------------------------------------------------------------- share links
def test_a_share_link_token_is_shown_once_and_opens_the_result(
    web: Any, owner: Any, private_analysis: Any
) -> None:
    response = web(owner).post(
        "/api/v1/share-links/", json=share_body(private_analysis, days=3, label="for the paper")
    )
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    token, url = body["token"], body["url"]
    assert url.startswith("http") and url.endswith(f"/s/{token}/")
    assert body["state"] == "live" and body["label"] == "for the paper"
    assert web().get(url).status_code == 200
    link = ShareLink.objects.get()
    assert token not in link.token_sha256
    listed = web(owner).get("/api/v1/share-links/")
    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    detail = web(owner).get(f"/api/v1/share-links/{link.code}/")
    assert detail.status_code == 200
    for answer in (listed.text, detail.text):
        assert token not in answer and '"token"' not in answer


@pytest.mark.parametrize(
    ("days", "words"),
    [
        (0, "A share link expires after 1 to 90 days."),
        (91, "A share link expires after 1 to 90 days."),
        ("soon", "The expiry is a whole number of days."),
    ],
)
def test_link_expiry_out_of_bounds_is_refused_and_nothing_stored(
    web: Any, owner: Any, private_analysis: Any, days: Any, words: str
) -> None:
    response = web(owner).post("/api/v1/share-links/", json=share_body(private_analysis, days=days))
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["days"] == [words]
    assert ShareLink.objects.count() == 0


def test_links_only_for_finished_analyses_their_sharers_and_never_for_strangers(
    web: Any, owner: Any, member: Any, stranger: Any, team_analysis: Any
) -> None:
    assert web(member).post("/api/v1/share-links/", json=share_body(team_analysis)).status_code == 403
    assert web(stranger).post("/api/v1/share-links/", json=share_body(team_analysis)).status_code == 404
    Analysis.objects.filter(pk=team_analysis.pk).update(status="queued")
    response = web(owner).post("/api/v1/share-links/", json=share_body(team_analysis))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Only a finished analysis can be shared by link."
    assert ShareLink.objects.count() == 0


def test_revoking_a_link_ends_it_and_only_its_managers_may(
    web: Any, owner: Any, member: Any, stranger: Any, team_analysis: Any
) -> None:
    body = web(owner).post("/api/v1/share-links/", json=share_body(team_analysis)).json()
    code, url = body["code"], body["url"]
    assert web(stranger).get(f"/api/v1/share-links/{code}/").status_code == 404
    assert delete(web(stranger), f"/api/v1/share-links/{code}/").status_code == 404
    assert delete(web(member), f"/api/v1/share-links/{code}/").status_code == 403
    assert web().get(url).status_code == 200
    response = delete(web(owner), f"/api/v1/share-links/{code}/")
    assert response.status_code == 200
    assert web().get(url).status_code == 404
    detail = web(owner).get(f"/api/v1/share-links/{code}/").json()
    assert detail["state"] == "revoked" and detail["revoked_by"] == {"username": owner.username}
    assert web(owner).get("/api/v1/share-links/", params={"state": "live"}).json()["count"] == 0
    assert web(owner).get("/api/v1/share-links/", params={"state": "revoked"}).json()["count"] == 1


def test_a_user_an_analysis_is_shared_with_reads_its_results_through_the_api_but_nothing_more(
    live_server: Any, web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    """With carol's own API token: the analysis, its files and ZIP (200); never the model file or
    the original video (404); no cancel, re-run, verify-free writes or delete (403); until revoked."""
    import requests

    from accounts.tokens import api_token_create

    made = web(owner).post(
        "/api/v1/shares/", json={**share_body(private_analysis), "username": "carol", "with_inputs": True}
    )
    assert made.status_code == 201, made.text
    _token, secret = api_token_create(user=carol, name="carol's script", expires_in_days=1)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {secret}"
    base, code = f"{live_server.url}/api/v1", private_analysis.code
    first_file = private_analysis.manifest["files"][0]["path"]
    reads = [
        f"/analyses/{code}/",
        f"/analyses/{code}/files/",
        f"/analyses/{code}/files/{first_file}",
        f"/analyses/{code}/download.zip",
    ]
    for path in reads:
        assert api.get(base + path, timeout=60).status_code == 200, path
    assert (
        api.get(f"{base}/classifiers/{private_analysis.classifier.code}/file/", timeout=30).status_code == 404
    )
    assert api.get(f"{base}/videos/{private_analysis.video.code}/original/", timeout=30).status_code == 404
    for method, path in (
        ("post", f"/analyses/{code}/cancel/"),
        ("post", f"/analyses/{code}/rerun/"),
        ("delete", f"/analyses/{code}/"),
    ):
        response = api.request(method.upper(), base + path, json={}, timeout=30)
        assert response.status_code == 403, (path, response.text[:200])
    response = api.post(
        f"{base}/shares/", json={**share_body(private_analysis), "username": owner.username}, timeout=30
    )
    assert response.status_code in (400, 403) and not Share.objects.filter(user=owner).exists()

    share = Share.objects.get(analysis=private_analysis, user=carol)
    assert delete(web(owner), f"/api/v1/shares/{share.code}/").status_code == 200
    for path in reads:
        assert api.get(base + path, timeout=30).status_code == 404, path
