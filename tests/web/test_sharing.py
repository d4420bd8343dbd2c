"""Sharing over real HTTP: read-only shares of analyses, classifiers and videos with a user or a
team, share links opened without login, and "Shared with me".

Every path of a result (page, status, each file kind, ZIP) is tried for: the owner, a member of
the analysis's team, a user it is shared with, another user, anonymous, a revoked share, an
expired link, a revoked link and a link for another analysis. Results are REAL engine output
(see tests/web/test_analysis_pages.py, whose fixtures are reused).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Team, TeamMembership, TeamRole
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
def private_analysis(
    owner: Any, library: dict[str, Any], engine_results: dict[str, Any], media_root: Path
) -> Any:
    """A finished analysis (with inference maps) whose inputs and result are the owner's alone."""
    Classifier.objects.filter(pk=library["classifier"].pk).update(team=None)
    Video.objects.filter(pk=library["wrong_video"].pk).update(team=None)
    library["classifier"].refresh_from_db()
    library["wrong_video"].refresh_from_db()
    return publish_result(
        owner=owner,
        team=None,
        classifier=library["classifier"],
        video=library["wrong_video"],
        result=engine_results["wrong"],
        media_root=media_root,
    )


def result_paths(analysis: Any) -> list[str]:
    """The page, its status JSON, one file of each kind the manifest lists, and the ZIP."""
    base = f"/analyses/{analysis.code}/"
    first_of_each_role: dict[str, str] = {}
    for record in analysis.manifest["files"]:
        first_of_each_role.setdefault(record["role"], record["path"])
    roles = set(first_of_each_role)
    assert {"heatmap_video", "heatmap_image", "inference_map", "raw_maps", "temporal_curve"} <= roles
    files = [f"{base}files/{path}" for path in ["manifest.json", *first_of_each_role.values()]]
    return [base, f"{base}status.json", *files, f"{base}download.zip"]


def link_paths(token: str, analysis: Any) -> list[str]:
    roles: dict[str, str] = {}
    for record in analysis.manifest["files"]:
        roles.setdefault(record["role"], record["path"])
    return [
        f"/s/{token}/",
        *[f"/s/{token}/a/{analysis.code}/files/{path}" for path in ["manifest.json", *roles.values()]],
        f"/s/{token}/download.zip",
    ]


def assert_statuses(client: Any, paths: list[str], expected: int) -> None:
    for path in paths:
        response = client.get(path, allow_redirects=False)
        assert response.status_code == expected, (path, response.status_code)


def make_link(client: Any, analysis: Any, **fields: Any) -> str:
    response = client.post(
        f"/analyses/{analysis.code}/links/",
        data={"days": "7", "label": "review", **fields},
        allow_redirects=True,
    )
    assert response.status_code == 200, response.text[:500]
    match = re.search(r'value="(http[^"]+/s/([A-Za-z0-9_-]+)/)"', response.text)
    assert match, "the new link is shown once on the page"
    return match.group(2)


# --------------------------------------------------------------------------- user shares
def test_an_analysis_is_shared_only_with_someone_who_sees_its_inputs_or_with_them(
    web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    client = web(owner)
    response = client.post(
        f"/share/analysis/{private_analysis.code}/", data={"username": "carol"}, allow_redirects=True
    )
    assert response.status_code == 200  # back on the page, with the reason in words
    assert "carol cannot see the" in response.text and "both its model and its video" in response.text
    assert Share.objects.count() == 0

    response = client.post(
        f"/share/analysis/{private_analysis.code}/",
        data={"username": "carol", "with_inputs": "on"},
        allow_redirects=True,
    )
    assert response.status_code == 200
    assert "Shared read-only with carol" in response.text
    assert Share.objects.filter(user=carol).count() == 3  # the analysis, its model and its video
    assert set(AuditEvent.objects.filter(action="share.created").values_list("target_type", flat=True)) == {
        "analysis",
        "classifier",
        "video",
    }
    # Again: nothing new, and no error.
    response = client.post(
        f"/share/analysis/{private_analysis.code}/", data={"username": "carol"}, allow_redirects=True
    )
    assert response.status_code == 200 and "shared with them already" in response.text
    assert Share.objects.filter(user=carol).count() == 3


def test_every_result_path_for_owner_shared_user_stranger_anonymous_and_after_revoking(
    web: Any, owner: Any, carol: Any, stranger: Any, private_analysis: Any
) -> None:
    paths = result_paths(private_analysis)
    web(owner).post(
        f"/share/analysis/{private_analysis.code}/",
        data={"username": "carol", "with_inputs": "on"},
        allow_redirects=True,
    )

    assert_statuses(web(owner), paths, 200)
    assert_statuses(web(carol), paths, 200)
    assert_statuses(web(stranger), paths, 404)
    for path in paths:
        response = web().get(path, allow_redirects=False)
        assert response.status_code == 302 and "/accounts/login/" in response.headers["Location"], path

    share = Share.objects.get(analysis=private_analysis, user=carol)
    response = web(owner).post(f"/shares/{share.code}/revoke/", allow_redirects=True)
    assert response.status_code == 200 and "Share revoked" in response.text
    assert_statuses(web(carol), paths, 404)
    assert AuditEvent.objects.filter(action="share.revoked", target_code=private_analysis.code).exists()


def test_a_share_is_read_only_never_the_files_of_the_inputs_and_never_re_shared(
    web: Any, owner: Any, carol: Any, stranger: Any, private_analysis: Any, media_root: Path
) -> None:
    web(owner).post(
        f"/share/analysis/{private_analysis.code}/",
        data={"username": "carol", "with_inputs": "on"},
        allow_redirects=True,
    )
    client = web(carol)
    classifier, video = private_analysis.classifier, private_analysis.video
    # The factory's video has no browser copy: give it one, as the transcode job does.
    (media_root / "videos").mkdir(exist_ok=True)
    (media_root / "videos" / "rendition.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    Video.objects.filter(pk=video.pk).update(rendition="videos/rendition.mp4")
    response = client.get(f"/classifiers/{classifier.code}/")
    assert response.status_code == 200 and "read-only for you" in response.text
    assert client.get(f"/classifiers/{classifier.code}/file/").status_code == 404
    assert client.get(f"/videos/{video.code}/").status_code == 200
    assert client.get(f"/videos/{video.code}/original/").status_code == 404
    assert client.get(f"/videos/{video.code}/rendition.mp4").status_code == 200
    assert client.post(f"/analyses/{private_analysis.code}/delete/").status_code == 403
    assert client.post(f"/analyses/{private_analysis.code}/cancel/").status_code == 403
    assert client.get(f"/analyses/{private_analysis.code}/rerun/").status_code == 403

    response = client.post(
        f"/share/analysis/{private_analysis.code}/",
        data={"username": stranger.username},
        allow_redirects=True,
    )
    assert response.status_code == 200 and "Only the owner of this analysis" in response.text
    assert not Share.objects.filter(user=stranger).exists()
    share = Share.objects.get(analysis=private_analysis, user=carol)
    assert client.post(f"/shares/{share.code}/revoke/").status_code == 403
    assert web(stranger).post(f"/shares/{share.code}/revoke/").status_code == 404
    assert Share.objects.filter(pk=share.pk).exists()
    response = client.post(
        f"/analyses/{private_analysis.code}/links/", data={"days": "7"}, allow_redirects=True
    )
    assert response.status_code == 200 and "Only the owner of this analysis" in response.text
    assert not ShareLink.objects.exists()


def test_a_team_share_reaches_every_member_and_the_analysis_team_member_sees_it_too(
    web: Any, owner: Any, member: Any, carol: Any, stranger: Any, team: Any, private_analysis: Any
) -> None:
    reviewers = Team.objects.create(name="Reviewers", created_by=owner)
    TeamMembership.objects.create(team=reviewers, user=owner, role=TeamRole.OWNER, added_by=owner)
    TeamMembership.objects.create(team=reviewers, user=carol, role=TeamRole.MEMBER, added_by=owner)
    paths = result_paths(private_analysis)
    assert_statuses(web(member), paths[:1], 404)  # not the team's yet

    response = web(owner).post(
        f"/share/analysis/{private_analysis.code}/",
        data={"team": str(reviewers.code), "with_inputs": "on"},
        allow_redirects=True,
    )
    assert response.status_code == 200 and "team Reviewers" in response.text
    assert_statuses(web(carol), paths, 200)
    assert_statuses(web(member), paths[:1], 404)
    assert_statuses(web(stranger), paths[:1], 404)

    # A team the sharer is not in is refused.
    response = web(member).post(
        f"/share/video/{private_analysis.video.code}/",
        data={"team": str(reviewers.code)},
        allow_redirects=True,
    )
    assert response.status_code == 404  # member cannot even see the video

    # Moving the analysis and its inputs into `team` gives the member access as before.
    Classifier.objects.filter(pk=private_analysis.classifier_id).update(team=team)
    Video.objects.filter(pk=private_analysis.video_id).update(team=team)
    Analysis.objects.filter(pk=private_analysis.pk).update(team=team)
    assert_statuses(web(member), paths, 200)


def test_shared_with_me_counts_new_items_and_lists_them_then_the_count_clears(
    web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    client = web(carol)
    response = client.get("/analyses/")
    assert response.status_code == 200 and 'data-testid="nav-shared-count"' not in response.text
    web(owner).post(
        f"/share/analysis/{private_analysis.code}/",
        data={"username": "carol", "with_inputs": "on"},
        allow_redirects=True,
    )
    response = client.get("/analyses/")
    assert response.status_code == 200
    assert re.search(r'data-testid="nav-shared-count"[^>]*>3<', response.text)
    response = client.get("/shared/")
    assert response.status_code == 200
    assert "3 new" in response.text
    assert str(private_analysis.code) in response.text and private_analysis.classifier.name in response.text
    response = client.get("/analyses/?shared=on")
    assert response.status_code == 200 and str(private_analysis.code) in response.text
    response = client.get("/analyses/")
    assert response.status_code == 200 and 'data-testid="nav-shared-count"' not in response.text


def test_sharing_refuses_unknown_users_oneself_and_bad_recipients_in_words(
    web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    client = web(owner)
    url = f"/share/video/{private_analysis.video.code}/"
    for data, words in (
        ({"username": "nobody-here"}, "There is no active user called"),
        ({"username": owner.username}, "cannot share with yourself"),
        ({"username": ""}, "Choose either a user or a team"),
        ({"username": "x" * 5000}, "There is no active user called"),
        ({"team": "not-a-uuid"}, "only with a team you belong to"),
    ):
        response = client.post(url, data=data, allow_redirects=True)
        assert response.status_code == 200 and words in response.text, data
    assert not Share.objects.exists()
    carol.is_active = False
    carol.save()
    response = client.post(url, data={"username": "carol"}, allow_redirects=True)
    assert response.status_code == 200 and "There is no active user called" in response.text


# --------------------------------------------------------------------------- share links
def test_a_share_link_shows_the_result_and_every_file_to_anyone_until_revoked(
    web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    token = make_link(web(owner), private_analysis)
    link = ShareLink.objects.get()
    assert token not in link.token_sha256 and len(link.token_sha256) == 64
    paths = link_paths(token, private_analysis)
    anonymous = web()
    assert_statuses(anonymous, paths, 200)
    page = anonymous.get(f"/s/{token}/")
    assert page.status_code == 200
    assert (
        page.headers["Cache-Control"] == "private, no-store"
        and page.headers["Referrer-Policy"] == "no-referrer"
    )
    assert (
        "Shared result (read-only)" in page.text
        and f"/s/{token}/a/{private_analysis.code}/files/" in page.text
    )
    assert f"/analyses/{private_analysis.code}/" not in page.text  # no links into signed-in pages
    manifest = anonymous.get(f"/s/{token}/a/{private_analysis.code}/files/manifest.json")
    assert manifest.json()["inputs"]["model"]["sha256"] == private_analysis.input_hashes["model"]
    ranged = anonymous.get(paths[2], headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.content) == 10
    for bad in ("../manifest.json", "notes.txt", "layers/../../../etc/passwd"):
        assert anonymous.get(f"/s/{token}/a/{private_analysis.code}/files/{bad}").status_code == 404
    assert anonymous.get(f"/analyses/{private_analysis.code}/", allow_redirects=False).status_code == 302
    link.refresh_from_db()
    assert link.use_count == 2 and link.last_used_at is not None
    assert AuditEvent.objects.filter(action="share_link.followed").count() == 2

    response = web(owner).post(f"/links/{link.code}/revoke/", allow_redirects=True)
    assert response.status_code == 200 and "Share link revoked" in response.text
    assert_statuses(anonymous, paths, 404)
    assert_statuses(web(carol), paths, 404)
    assert AuditEvent.objects.filter(action="share_link.revoked").count() == 1


def test_an_expired_link_a_wrong_token_and_a_link_of_another_analysis_open_nothing(
    web: Any,
    owner: Any,
    library: dict[str, Any],
    engine_results: dict[str, Any],
    media_root: Path,
    private_analysis: Any,
) -> None:
    other = publish_result(
        owner=owner,
        team=None,
        classifier=library["classifier"],
        video=library["right_video"],
        result=engine_results["right"],
        media_root=media_root,
    )
    token = make_link(web(owner), private_analysis)
    anonymous = web()
    # The link opens its own analysis only: the other's files are not reachable through it.
    other_only = [
        r["path"]
        for r in other.manifest["files"]
        if r["path"] not in {p["path"] for p in private_analysis.manifest["files"]}
    ]
    for path in [*other_only[:3], "manifest.json"]:
        assert anonymous.get(f"/s/{token}/a/{other.code}/files/{path}").status_code == 404
    page = anonymous.get(f"/s/{token}/")
    assert page.status_code == 200 and str(private_analysis) in page.text
    for bad in ("x", "A" * 43, "A" * 5000, token[:-1]):
        assert anonymous.get(f"/s/{bad}/").status_code == 404
    ShareLink.objects.update(expires_at=private_analysis.created_at - timedelta(days=1))
    assert_statuses(anonymous, link_paths(token, private_analysis), 404)


@pytest.mark.parametrize("days", ["0", "91", "-3", "seven", "1e9"])
def test_a_link_expiry_outside_1_to_90_days_is_refused_in_words(
    web: Any, owner: Any, private_analysis: Any, days: str
) -> None:
    response = web(owner).post(
        f"/analyses/{private_analysis.code}/links/", data={"days": days}, allow_redirects=True
    )
    assert response.status_code == 200
    assert "expires after 1 to 90 days" in response.text or "whole number of days" in response.text
    assert not ShareLink.objects.exists()


def test_only_someone_who_may_share_both_inputs_makes_a_link_and_it_dies_with_that_right(
    web: Any,
    owner: Any,
    member: Any,
    team: Any,
    library: dict[str, Any],
    engine_results: dict[str, Any],
    media_root: Path,
) -> None:
    # The member's own analysis of the owner's model and video, shared with the team.
    analysis = publish_result(
        owner=member,
        team=team,
        classifier=library["classifier"],
        video=library["wrong_video"],
        result=engine_results["wrong"],
        media_root=media_root,
    )
    response = web(member).post(f"/analyses/{analysis.code}/links/", data={"days": "7"}, allow_redirects=True)
    assert (
        response.status_code == 200
        and "only someone who may share both its model and its video" in response.text
    )
    assert not ShareLink.objects.exists()

    # The owner's analysis: a link works until the owner is no longer allowed to share it.
    mine = publish_result(
        owner=owner,
        team=team,
        classifier=library["classifier"],
        video=library["wrong_video"],
        result=engine_results["wrong"],
        media_root=media_root,
    )
    token = make_link(web(owner), mine)
    assert web().get(f"/s/{token}/").status_code == 200
    owner.is_active = False
    owner.save()
    assert web().get(f"/s/{token}/").status_code == 404


def test_the_access_panel_lists_who_sees_an_object_to_those_who_may_share_it(
    web: Any, owner: Any, member: Any, carol: Any, team: Any, private_analysis: Any
) -> None:
    web(owner).post(
        f"/share/analysis/{private_analysis.code}/",
        data={"username": "carol", "with_inputs": "on"},
        allow_redirects=True,
    )
    make_link(web(owner), private_analysis)
    response = web(owner).get(f"/analyses/{private_analysis.code}/")
    assert response.status_code == 200
    assert 'data-testid="share-form"' in response.text and 'data-testid="link-row"' in response.text
    assert response.text.count('data-testid="share-row"') == 1 and "carol" in response.text
    response = web(carol).get(f"/analyses/{private_analysis.code}/")
    assert response.status_code == 200
    assert 'data-testid="share-form"' not in response.text and 'data-testid="link-row"' not in response.text
    assert 'data-testid="revoke-share"' not in response.text


def test_the_admin_lists_shares_and_links_without_their_token_and_revokes_them_audited(
    web: Any, owner: Any, carol: Any, private_analysis: Any
) -> None:
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD

    web(owner).post(
        f"/share/analysis/{private_analysis.code}/", data={"username": "carol", "with_inputs": "on"}
    )
    token = make_link(web(owner), private_analysis)
    admin_user = get_user_model().objects.create_superuser(
        username="root_admin", email="r@example.org", password=PASSWORD
    )
    admin = web(admin_user)
    response = admin.get("/admin/analyses/sharelink/")
    assert response.status_code == 200 and "review" in response.text and token not in response.text
    link = ShareLink.objects.get()
    response = admin.get(f"/admin/analyses/sharelink/{link.pk}/change/")
    assert response.status_code == 200 and link.token_sha256 not in response.text
    response = admin.post(
        "/admin/analyses/sharelink/",
        data={"action": "revoke", "_selected_action": [str(link.pk)]},
        allow_redirects=True,
    )
    assert response.status_code == 200
    assert web().get(f"/s/{token}/").status_code == 404
    response = admin.get("/admin/analyses/share/")
    assert response.status_code == 200 and response.text.count("shared with carol") >= 3
    share_ids = [str(pk) for pk in Share.objects.values_list("pk", flat=True)]
    admin.post(
        "/admin/analyses/share/",
        data={"action": "revoke", "_selected_action": share_ids},
        allow_redirects=True,
    )
    assert not Share.objects.exists()
    assert AuditEvent.objects.filter(action="share.revoked", actor=admin_user).count() == 3
    assert web(carol).get(f"/analyses/{private_analysis.code}/").status_code == 404
