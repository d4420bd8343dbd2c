"""An analysis shows its video's frames, so it is shared only with people who can see both of its
inputs; every path that returns frames checks the video; an archived original is its owner's.

Personas: `owner` (owner of team "Vision Lab", owns the inputs), `member` (a member of Vision
Lab who also owns a second team "Side Project", where `stranger` is a member).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.models import Team, TeamMembership, TeamRole
from analyses.models import Analysis, Classifier, Video
from tests.web.library_factories import (  # noqa: F401 - fixtures
    code_from_location,
    model_files,
    private_media_root,
    upload_model,
    upload_video,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)

FORM = {
    "method": "gradcam",
    "pooling": "global",
    "bbox_mode": "otsu",
    "bbox_threshold": "0.5",
    "colormap": "jet",
    "alpha": "0.3",
    "frame_stride": "1",
    "frame_offset": "0",
    "resize_mode": "stretch",
    "scaling": "unit",
    "mean": "",
    "std": "",
    "title": "",
    "expected_class": "",
}


@pytest.fixture
def side_project(member: Any, stranger: Any) -> Team:
    """A second team: `member` is its owner, `stranger` a member; `owner` is not in it."""
    team = Team.objects.create(name="Side Project", created_by=member)
    TeamMembership.objects.create(team=team, user=member, role=TeamRole.OWNER, added_by=member)
    TeamMembership.objects.create(team=team, user=stranger, role=TeamRole.MEMBER, added_by=member)
    return team


@pytest.fixture
def inputs(
    web: Any, owner: Any, team: Any, model_files: dict[str, Path], video_files: dict[str, Path]
) -> dict[str, Any]:
    """A model and a video owned by `owner` and shared with Vision Lab only (real uploads)."""
    client = web(owner)
    classifier = Classifier.objects.get(
        code=code_from_location(
            upload_model(client, model_files["good_h5"], team=str(team.pk)), prefix="/classifiers/"
        )
    )
    video = Video.objects.get(
        code=code_from_location(
            upload_video(client, video_files["avi"], team=str(team.pk)), prefix="/videos/"
        )
    )
    assert classifier.is_ready and video.is_ready
    return {"classifier": classifier, "video": video}


def _analysis_urls(analysis: Analysis) -> list[str]:
    return [
        f"/analyses/{analysis.code}/",
        f"/analyses/{analysis.code}/status.json",
        f"/analyses/{analysis.code}/files/manifest.json",
        f"/analyses/{analysis.code}/download.zip",
        f"/analyses/{analysis.code}/rerun/",
    ]


def test_a_member_cannot_share_an_analysis_with_a_team_that_cannot_see_its_video(
    web: Any, member: Any, stranger: Any, team: Any, side_project: Team, inputs: dict[str, Any]
) -> None:
    client = web(member)
    codes = {"classifier": str(inputs["classifier"].code), "video": str(inputs["video"].code)}
    refused = client.post("/analyses/new/", data={**FORM, **codes, "team": str(side_project.pk)})
    assert refused.status_code == 400
    assert "Share the video" in refused.text and "Side Project" in refused.text
    assert Analysis.objects.count() == 0
    # With the team that can see both inputs it is accepted.
    accepted = client.post("/analyses/new/", data={**FORM, **codes, "team": str(team.pk)})
    assert accepted.status_code == 302, accepted.text[:2000]
    analysis = Analysis.objects.get()
    assert analysis.team == team
    for url in _analysis_urls(analysis):
        response = web(stranger).get(url)
        assert response.status_code == 404, url


def test_an_analysis_stops_being_visible_to_a_team_when_its_video_stops_being_shared_with_it(
    web: Any, owner: Any, member: Any, team: Any, inputs: dict[str, Any]
) -> None:
    from analyses.runs.services import analysis_create

    analysis = analysis_create(
        user=member,
        classifier=inputs["classifier"],
        video=inputs["video"],
        expected_class=None,
        params={},
        team=team,
    )
    teammate = web(member)
    assert teammate.get(f"/analyses/{analysis.code}/").status_code == 200
    # The video's owner makes it private again: the frames go with it, for everyone but them.
    client = web(owner)
    response = client.post(f"/videos/{inputs['video'].code}/", data={"name": "clip", "team": ""})
    assert response.status_code == 302
    for url in _analysis_urls(analysis):
        response = teammate.get(url)
        assert response.status_code == 404, url
    listing = teammate.get("/analyses/")
    assert listing.status_code == 200 and str(analysis.code) not in listing.text


def test_a_team_owner_cannot_preview_frames_of_a_members_private_video_through_a_rerun(
    web: Any, owner: Any, member: Any, team: Any, inputs: dict[str, Any], video_files: dict[str, Path]
) -> None:
    # The member's own private video, analysed with the team's model, in an analysis shared with
    # the team (a row written before the sharing rule existed, as a migration would find it).
    private = Video.objects.get(
        code=code_from_location(upload_video(web(member), video_files["mp4"]), prefix="/videos/")
    )
    legacy = Analysis.objects.create(
        owner=member,
        team=team,
        classifier=inputs["classifier"],
        video=private,
        params={},
        status="succeeded",
        stage="done",
    )
    team_owner = web(owner)
    for url in _analysis_urls(legacy):
        response = team_owner.get(url)
        assert response.status_code == 404, url
    preview = team_owner.post(
        f"/analyses/{legacy.code}/rerun/",
        data={**FORM, "action": "preview"},
        headers={"Accept": "application/json"},
    )
    assert preview.status_code == 404
    from analyses.models import Preview

    assert Preview.objects.count() == 0
    # Its maker still sees it.
    assert web(member).get(f"/analyses/{legacy.code}/").status_code == 200


def test_the_preview_service_itself_refuses_a_video_the_user_cannot_see(
    owner: Any, member: Any, inputs: dict[str, Any], web: Any, video_files: dict[str, Path]
) -> None:
    from analyses.runs.previews import PreviewError, preview_create

    private = Video.objects.get(
        code=code_from_location(upload_video(web(member), video_files["mp4"]), prefix="/videos/")
    )
    with pytest.raises(PreviewError, match="not available to you"):
        preview_create(user=owner, classifier=inputs["classifier"], video=private, preprocess={})


def test_an_archived_original_is_for_its_owner_only(
    web: Any, owner: Any, member: Any, team: Any, inputs: dict[str, Any]
) -> None:
    from analyses.runs.services import analysis_create

    analysis_create(
        user=owner,
        classifier=inputs["classifier"],
        video=inputs["video"],
        expected_class=None,
        params={},
        team=team,
    )
    video = inputs["video"]
    client = web(owner)
    response = client.post(f"/videos/{video.code}/delete/")
    assert response.status_code == 302
    video.refresh_from_db()
    assert video.archived_at is not None
    teammate = web(member)
    original = teammate.get(f"/videos/{video.code}/original/")
    assert original.status_code == 404
    page = teammate.get(f"/videos/{video.code}/")
    assert page.status_code == 200 and f"/videos/{video.code}/original/" not in page.text
    assert client.get(f"/videos/{video.code}/original/").status_code == 200


def test_a_rerun_by_someone_whose_team_cannot_see_the_inputs_is_private(
    owner: Any, member: Any, team: Any, inputs: dict[str, Any]
) -> None:
    from analyses.runs.services import analysis_create, analysis_rerun

    original = analysis_create(
        user=owner,
        classifier=inputs["classifier"],
        video=inputs["video"],
        expected_class=None,
        params={},
        team=team,
    )
    rerun = analysis_rerun(user=owner, analysis=original, params_changes={"colormap": "viridis"})
    assert rerun.team == team
    Video.objects.filter(pk=inputs["video"].pk).update(team=None)
    original = Analysis.objects.select_related("classifier", "video").get(pk=original.pk)
    assert analysis_rerun(user=owner, analysis=original, params_changes={"colormap": "turbo"}).team is None


def test_the_admin_cannot_share_an_analysis_with_a_team_that_cannot_see_its_inputs(
    web: Any, owner: Any, team: Any, side_project: Team, inputs: dict[str, Any]
) -> None:
    from django.contrib.auth import get_user_model

    from analyses.runs.services import analysis_create
    from tests.conftest import PASSWORD

    analysis = analysis_create(
        user=owner,
        classifier=inputs["classifier"],
        video=inputs["video"],
        expected_class=None,
        params={},
        team=team,
    )
    staff = get_user_model().objects.create_superuser(
        username="root_admin", email="r@example.org", password=PASSWORD
    )
    client = web(staff)
    url = f"/admin/analyses/analysis/{analysis.pk}/change/"
    refused = client.post(url, data={"title": "moved", "team": str(side_project.pk)})
    assert refused.status_code == 200 and "Share the video" in refused.text
    analysis.refresh_from_db()
    assert (analysis.team, analysis.title) == (team, "")
    assert client.post(url, data={"title": "renamed", "team": str(team.pk)}).status_code == 302
    analysis.refresh_from_db()
    assert analysis.title == "renamed"
