"""The comparison pages over real HTTP, for the personas: an unsaved comparison from its URL,
bounds and malformed codes, save / open / delete, and the difference row's job (the real engine
in its sandboxed child, through the queued django-q2 task)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.jobs import run_queued_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def compare_url(*analyses: Any) -> str:
    return "/compare/?" + "&".join(f"a={analysis.code}" for analysis in analyses)


def private_analysis_of(user: Any, *, like: Any) -> Any:
    """An analysis only `user` can see (no team), on the same classifier and video as `like`."""
    from analyses.models import Analysis

    return Analysis.objects.create(
        owner=user,
        classifier=like.classifier,
        video=like.video,
        params=like.params,
        status="succeeded",
        manifest=like.manifest,
        results_dir=like.results_dir,
        predicted_class=like.predicted_class,
        title="private",
    )


def test_owner_and_team_member_see_two_models_on_one_video_side_by_side(
    web: Any, owner: Any, member: Any, published: dict[str, Any]
) -> None:
    gradcam, plus = published["gradcam"], published["gradcampp"]
    for user in (owner, member):
        response = web(user).get(compare_url(gradcam, plus))
        assert response.status_code == 200
        html = response.text
        assert html.count('data-testid="compare-column"') == 2
        assert "Aligned frame by frame" in html
        assert html.count("data-compare-video=") == 2 and html.count("data-compare-image=") == 2
        # Result files come through each analysis's own checked view.
        assert (
            f"/analyses/{gradcam.code}/files/layers/" in html
            and f"/analyses/{plus.code}/files/layers/" in html
        )
        # The method differs: marked in the parameters table.
        method_row = re.search(r'<tr class="differs"><th scope="row" class="small">Method', html)
        assert method_row is not None
        assert 'data-testid="difference-A-B"' in html and "difference-unavailable" not in html


def test_one_model_on_two_videos_has_no_difference_row_and_says_why(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    response = web(owner).get(compare_url(published["gradcam"], published["other_video"]))
    assert response.status_code == 200
    assert "No difference: They explain different videos." in response.text
    assert re.search(r'compare-fact differs" data-testid="fact-video"', response.text)


def test_columns_with_other_frame_rates_align_by_source_timestamp_and_say_so(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    response = web(owner).get(compare_url(published["other_video"], published["other_video_8fps"]))
    assert response.status_code == 200
    assert "Aligned by source timestamp." in response.text


def test_layers_of_one_analysis_are_columns_too(web: Any, owner: Any, published: dict[str, Any]) -> None:
    gradcam = published["gradcam"]
    layers = gradcam.manifest["model"]["selected_layers"]
    assert len(layers) >= 2
    response = web(owner).get(f"/compare/?a={gradcam.code}:0&a={gradcam.code}:1")
    assert response.status_code == 200
    assert response.text.count('data-testid="compare-column"') == 2
    assert "/files/layers/00/heatmap.mp4" in response.text and "/files/layers/01/heatmap.mp4" in response.text
    # Two layers of different sizes are still the same model input: a difference row.
    assert "difference-unavailable" not in response.text
    chooser = web(owner).get(f"/compare/choose/{gradcam.code}/")
    assert chooser.status_code == 200 and chooser.text.count('data-testid="choose-layer"') == len(layers)
    detail = web(owner).get(f"/analyses/{gradcam.code}/")
    assert detail.status_code == 200 and f"/compare/choose/{gradcam.code}/" in detail.text


def test_rerun_chain_is_offered_for_comparison_from_both_ends(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    from analyses.models import Analysis

    gradcam, plus = published["gradcam"], published["gradcampp"]
    Analysis.objects.filter(pk=plus.pk).update(parent=gradcam)
    for analysis, other in ((gradcam, plus), (plus, gradcam)):
        detail = web(owner).get(f"/analyses/{analysis.code}/")
        assert detail.status_code == 200 and 'data-testid="compare-reruns-link"' in detail.text
        chooser = web(owner).get(f"/compare/choose/{analysis.code}/?mode=reruns")
        assert chooser.status_code == 200
        assert re.search(rf'value="{other.code}" checked', chooser.text)
        assert re.search(rf'value="{analysis.code}" checked', chooser.text)


def test_stranger_and_someone_who_sees_only_one_analysis_get_404_everywhere(
    web: Any, owner: Any, member: Any, stranger: Any, published: dict[str, Any]
) -> None:
    gradcam, plus = published["gradcam"], published["gradcampp"]
    assert web(stranger).get(compare_url(gradcam, plus)).status_code == 404
    # Only the member sees their private analysis: the owner sees one of the two.
    mine = private_analysis_of(member, like=plus)
    assert web(member).get(compare_url(gradcam, mine)).status_code == 200
    assert web(owner).get(compare_url(gradcam, mine)).status_code == 404
    assert (
        web(owner)
        .post("/compare/differences/", data={"a": str(gradcam.code), "b": str(mine.code)})
        .status_code
        == 404
    )
    assert (
        web(stranger)
        .post("/compare/differences/", data={"a": str(gradcam.code), "b": str(plus.code)})
        .status_code
        == 404
    )
    assert web().get(compare_url(gradcam, plus)).status_code == 302  # anonymous: to the login page


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("one", 400, "1 was given"),
        ("five", 400, "5 were given"),
        ("a=not-a-code&a=also-not", 400, "is not an analysis code"),
        ("a=00000000-0000-0000-0000-000000000000&a=11111111-1111-1111-1111-111111111111", 404, ""),
        ("layer", 400, "has no layer number 9"),
        ("", 400, "0 were given"),
    ],
)
def test_bounds_and_malformed_codes_get_a_clear_page(
    web: Any, owner: Any, published: dict[str, Any], query: str, status: int, words: str
) -> None:
    codes = [str(analysis.code) for analysis in published.values()]
    query = {
        "one": f"a={codes[0]}",
        "five": "&".join(f"a={code}" for code in [*codes, codes[0]]),
        "layer": f"a={codes[0]}:9&a={codes[1]}",
    }.get(query, query)
    response = web(owner).get(f"/compare/?{query}")
    assert response.status_code == status
    if words:
        assert 'data-testid="compare-error"' in response.text and words in response.text


def test_saved_comparison_has_its_own_url_for_viewers_of_all_its_analyses_and_only_its_owner_deletes_it(
    web: Any, owner: Any, member: Any, stranger: Any, published: dict[str, Any]
) -> None:
    from analyses.models import Comparison
    from audit.models import AuditEvent

    gradcam, plus = published["gradcam"], published["gradcampp"]
    owner_client = web(owner)
    refused = owner_client.post(
        "/compare/save/", data=[("a", str(gradcam.code)), ("a", str(plus.code)), ("title", " ")]
    )
    assert refused.status_code == 400 and "Give the comparison a title" in refused.text
    assert not Comparison.objects.exists()
    saved = owner_client.post(
        "/compare/save/",
        data=[("a", str(gradcam.code)), ("a", f"{plus.code}:1"), ("title", "Grad-CAM vs ++")],
    )
    assert saved.status_code == 302
    comparison = Comparison.objects.get()
    assert saved.headers["Location"] == f"/compare/{comparison.code}/"
    assert [column.layer_name for column in comparison.columns.all()] == [
        gradcam.manifest["model"]["selected_layers"][-1],
        plus.manifest["model"]["selected_layers"][1],
    ]
    assert AuditEvent.objects.filter(action="comparison.created").count() == 1
    for user in (owner, member):
        page = web(user).get(f"/compare/{comparison.code}/")
        assert page.status_code == 200 and "Grad-CAM vs ++" in page.text
    assert web(stranger).get(f"/compare/{comparison.code}/").status_code == 404
    assert web(owner).get("/compare/00000000-0000-0000-0000-000000000000/").status_code == 404
    # Someone who may see only one of its analyses: 404, as a stranger.
    from accounts.models import TeamMembership

    TeamMembership.objects.filter(user=member).delete()
    assert web(member).get(f"/compare/{comparison.code}/").status_code == 404
    assert web(stranger).post(f"/compare/{comparison.code}/delete/").status_code == 404
    assert web(member).post(f"/compare/{comparison.code}/delete/").status_code == 404
    deleted = owner_client.post(f"/compare/{comparison.code}/delete/")
    assert deleted.status_code == 302 and not Comparison.objects.exists()
    assert AuditEvent.objects.filter(action="comparison.deleted").count() == 1
    gradcam.refresh_from_db()  # the analyses stay


def test_team_member_may_view_but_not_delete_a_saved_comparison(
    web: Any, owner: Any, member: Any, published: dict[str, Any]
) -> None:
    from analyses.compare.selectors import Column
    from analyses.compare.services import comparison_create

    comparison = comparison_create(
        user=owner,
        title="Shared",
        columns=[
            Column(analysis=published["gradcam"], layer_name=""),
            Column(analysis=published["gradcampp"], layer_name=""),
        ],
    )
    assert web(member).get(f"/compare/{comparison.code}/").status_code == 200
    assert web(member).post(f"/compare/{comparison.code}/delete/").status_code == 403


def test_difference_job_runs_in_the_worker_and_its_files_are_served_only_to_viewers_of_both(
    web: Any, owner: Any, member: Any, stranger: Any, published: dict[str, Any]
) -> None:
    from analyses.models import ComparisonDifference

    gradcam, plus = published["gradcam"], published["gradcampp"]
    requested = web(owner).post("/compare/differences/", data={"a": f"{gradcam.code}:", "b": f"{plus.code}:"})
    assert requested.status_code == 202
    payload = requested.json()
    assert payload["status"] == "queued"
    assert (
        web(member)
        .post("/compare/differences/", data={"a": f"{gradcam.code}:", "b": f"{plus.code}:"})
        .json()["code"]
        == payload["code"]
    )
    assert ComparisonDifference.objects.count() == 1  # one job per pair, shared
    assert run_queued_tasks() == ["ready"]
    difference = ComparisonDifference.objects.get()
    frames = len(gradcam.manifest["preprocess"]["source_frame_indices"])
    assert (
        difference.status == "ready"
        and difference.attempts == 1
        and len(difference.result["frames"]) == frames
    )
    status = web(member).get(payload["status_url"])
    assert status.status_code == 200 and status.json()["status"] == "ready"
    files = [*status.json()["frames"], status.json()["legend_url"]]
    assert len(files) == frames + 1
    for url in files:
        for user in (owner, member):
            response = web(user).get(url)
            assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
            assert response.content.startswith(b"\x89PNG")
        assert web(stranger).get(url).status_code == 404
    assert web(stranger).get(payload["status_url"]).status_code == 404
    assert web(owner).get(f"/compare/differences/{difference.code}/files/frames/9999.png").status_code == 404
    assert web(owner).get(f"/compare/differences/{difference.code}/files/..%2f..%2fsecret").status_code == 404
    # The page of the pair now carries the finished difference.
    page = web(member).get(compare_url(gradcam, plus))
    assert page.status_code == 200 and f"/compare/differences/{difference.code}/files/legend.png" in page.text


def test_difference_job_fails_in_words_when_a_raw_maps_file_is_broken(
    web: Any, owner: Any, published: dict[str, Any], media_root: Any
) -> None:
    from analyses.models import ComparisonDifference

    gradcam, plus = published["gradcam"], published["gradcampp"]
    layer = gradcam.manifest["layers"][-1]["raw_maps"]["path"]
    (media_root / gradcam.results_dir / layer).write_bytes(b"not a zip at all")
    assert (
        web(owner)
        .post("/compare/differences/", data={"a": str(gradcam.code), "b": str(plus.code)})
        .status_code
        == 202
    )
    assert run_queued_tasks() == ["failed"]
    difference = ComparisonDifference.objects.get()
    assert difference.status == "failed" and "not a valid .npz" in difference.message
    assert not (media_root / "differences" / difference.code.hex).exists()
    # Asking again queues it again (the cause may have been fixed).
    again = web(owner).post("/compare/differences/", data={"a": str(gradcam.code), "b": str(plus.code)})
    assert again.status_code == 202 and again.json()["status"] == "queued"


def test_difference_of_columns_on_different_videos_is_refused(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    response = web(owner).post(
        "/compare/differences/",
        data={"a": str(published["gradcam"].code), "b": str(published["other_video"].code)},
    )
    assert response.status_code == 400 and "different videos" in response.json()["error"]


def test_reaper_requeues_a_difference_whose_worker_died(owner: Any, published: dict[str, Any]) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from analyses.compare.services import differences_reap
    from analyses.models import ComparisonDifference

    gradcam, plus = published["gradcam"], published["gradcampp"]
    layer = gradcam.manifest["model"]["selected_layers"][-1]
    row = ComparisonDifference.objects.create(
        analysis_a=gradcam,
        layer_a=layer,
        class_a=gradcam.predicted_class,
        analysis_b=plus,
        layer_b=plus.manifest["model"]["selected_layers"][-1],
        class_b=plus.predicted_class,
        status="running",
        lease="this-host-never:1:1",
        started_at=timezone.now() - timedelta(hours=1),
        attempts=1,
    )
    assert differences_reap()["requeued"] == 1
    row.refresh_from_db()
    assert row.status == "queued" and row.lease == ""
    assert run_queued_tasks() == ["ready"]


def test_owner_of_a_saved_comparison_who_lost_access_to_its_analyses_sees_why_and_can_delete_it(
    web: Any, member: Any, published: dict[str, Any]
) -> None:
    from accounts.models import TeamMembership
    from analyses.compare.selectors import Column
    from analyses.compare.services import comparison_create
    from analyses.models import Comparison

    comparison = comparison_create(
        user=member,
        title="Mine, on the team's analyses",
        columns=[
            Column(analysis=published["gradcam"], layer_name=""),
            Column(analysis=published["gradcampp"], layer_name=""),
        ],
    )
    TeamMembership.objects.filter(user=member).delete()
    client = web(member)
    page = client.get(f"/compare/{comparison.code}/")
    assert page.status_code == 200 and 'data-testid="compare-gone"' in page.text
    assert "2 of this comparison's analyses are no longer available to you" in page.text
    assert "/files/" not in page.text  # nothing of the analyses it may no longer see
    assert client.post(f"/compare/{comparison.code}/delete/").status_code == 302
    assert not Comparison.objects.exists()
