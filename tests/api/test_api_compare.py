"""Comparisons and differences through the API over real HTTP, for the owner, a team member, a
user both analyses are shared with, another user (404) and anonymous: the pages' bounds and
refusals with nothing stored, the difference job run by the real engine (through its queued
task), and a share link to a saved comparison. Results are REAL engine output
(tests/compare/conftest.py's `published`)."""

from __future__ import annotations

from typing import Any

import pytest

from analyses.compare.models import Comparison, ComparisonDifference
from analyses.models import Share
from audit.models import AuditEvent
from tests.compare.conftest import compare_results, published  # noqa: F401 - fixtures
from tests.jobs import run_queued_tasks
from tests.web.test_analysis_pages import library, media_root  # noqa: F401 - fixtures
from tests.worker.conftest import demo  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MISSING = "6f1d2c3e-0000-4000-8000-000000000000"


@pytest.fixture
def carol(published: dict[str, Any], owner: Any) -> Any:
    """A user with whom both Grad-CAM analyses (and their inputs) are shared, in no team."""
    from tests.conftest import _make_user

    carol = _make_user(username="carol", email="carol@example.com")
    first = published["gradcam"]
    for target in (first.classifier, first.video, first, published["gradcampp"]):
        Share.objects.create(**{target._meta.model_name: target}, user=carol, created_by=owner)
    return carol


def delete(client: Any, path: str) -> Any:
    return client.session.delete(
        client.url(path), headers={"X-CSRFToken": client.csrf_token(), "Referer": client.url("/")}
    )


def save(client: Any, *analyses: Any, title: str = "Grad-CAM vs ++") -> Any:
    return client.post(
        "/api/v1/comparisons/",
        json={"title": title, "columns": [str(analysis.code) for analysis in analyses]},
    )


def test_anonymous_gets_no_comparison_endpoint(web: Any, owner: Any, published: dict[str, Any]) -> None:
    gradcam, plus = published["gradcam"], published["gradcampp"]
    comparison = Comparison.objects.create(owner=owner, title="t")
    client = web()
    # No credentials: 401 (with WWW-Authenticate: Bearer), in the one error shape.
    for response in (
        client.get("/api/v1/comparisons/"),
        client.get(f"/api/v1/comparisons/{comparison.code}/"),
        save(client, gradcam, plus),
        client.post("/api/v1/differences/", json={"a": str(gradcam.code), "b": str(plus.code)}),
    ):
        assert response.status_code == 401
    assert Comparison.objects.count() == 1 and ComparisonDifference.objects.count() == 0


def test_owner_saves_a_comparison_with_its_columns_alignment_and_difference_row(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    gradcam, plus = published["gradcam"], published["gradcampp"]
    response = save(web(owner), gradcam, plus)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["title"] == "Grad-CAM vs ++" and body["can_delete"] is True and body["missing"] == 0
    assert body["alignment"] == "frame"
    assert [column["analysis"]["code"] for column in body["columns"]] == [str(gradcam.code), str(plus.code)]
    first = body["columns"][0]
    assert first["ready"] is True and first["layer"] == first["layers"][-1]
    assert first["images"] and all(
        f"/api/v1/analyses/{gradcam.code}/files/" in url for url in first["images"]
    )
    assert body["differences"] == [
        {
            "a": first["value"],
            "b": body["columns"][1]["value"],
            "available": True,
            "reason": None,
            "difference": body["differences"][0]["difference"],
        }
    ]
    assert body["differences"][0]["difference"]["status"] == "none"
    assert AuditEvent.objects.filter(action="comparison.created").count() == 1
    listed = web(owner).get("/api/v1/comparisons/").json()
    assert [item["code"] for item in listed["results"]] == [body["code"]]


def test_two_videos_align_by_timestamp_and_have_no_difference_and_say_why(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    body = save(
        web(owner), published["other_video"], published["other_video_8fps"], published["gradcam"]
    ).json()
    assert body["alignment"] == "timestamp"
    assert body["differences"][1]["available"] is False
    assert body["differences"][1]["reason"] == "They explain different videos."


@pytest.mark.parametrize(
    ("columns", "status", "words"),
    [
        (["gradcam"], 400, "1 was given"),
        (["gradcam", "gradcampp", "other_video", "other_video_8fps", "gradcam"], 400, "5 were given"),
        (["not-a-code", "gradcam"], 400, "is not an analysis code"),
        (["gradcam:9", "gradcampp"], 400, "has no layer number 9"),
        ([MISSING, "gradcam"], 404, ""),
    ],
)
def test_bounds_and_malformed_columns_are_refused_and_nothing_is_stored(
    web: Any, owner: Any, published: dict[str, Any], columns: list[str], status: int, words: str
) -> None:
    def value(name: str) -> str:
        head, _, rest = name.partition(":")
        return str(published[head].code) + (f":{rest}" if rest else "") if head in published else name

    response = web(owner).post(
        "/api/v1/comparisons/", json={"title": "x", "columns": [value(name) for name in columns]}
    )
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert Comparison.objects.count() == 0


def test_a_title_is_required_and_bounded_with_the_pages_words(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    client = web(owner)
    response = save(client, published["gradcam"], published["gradcampp"], title="   ")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Give the comparison a title to save it."
    response = save(client, published["gradcam"], published["gradcampp"], title="x" * 201)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The title is longer than 200 characters."
    assert Comparison.objects.count() == 0


def test_viewers_of_every_analysis_read_it_only_its_owner_deletes_it_others_get_404(
    web: Any, owner: Any, member: Any, stranger: Any, carol: Any, published: dict[str, Any]
) -> None:
    code = save(web(owner), published["gradcam"], published["gradcampp"]).json()["code"]
    url = f"/api/v1/comparisons/{code}/"
    for viewer in (member, carol):
        response = web(viewer).get(url)
        assert response.status_code == 200, viewer
        assert response.json()["can_delete"] is False
        assert delete(web(viewer), url).status_code == 403
        assert web(viewer).get("/api/v1/comparisons/").json()["count"] == 0  # the list is yours only
    assert web(stranger).get(url).status_code == 404
    assert delete(web(stranger), url).status_code == 404
    assert Comparison.objects.filter(code=code).exists()
    response = delete(web(owner), url)
    assert response.status_code == 200
    assert response.json()["message"] == "Comparison deleted (its analyses are untouched)."
    assert not Comparison.objects.filter(code=code).exists()
    assert web(owner).get(url).status_code == 404


def test_a_difference_is_queued_computed_by_the_worker_and_served_to_viewers_of_both_only(
    web: Any, owner: Any, member: Any, stranger: Any, carol: Any, published: dict[str, Any]
) -> None:
    gradcam, plus = published["gradcam"], published["gradcampp"]
    pair = {"a": f"{gradcam.code}:", "b": f"{plus.code}:"}
    assert web(stranger).post("/api/v1/differences/", json=pair).status_code == 404
    assert ComparisonDifference.objects.count() == 0
    response = web(owner).post("/api/v1/differences/", json=pair)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    status_url = response.json()["status_url"]
    assert run_queued_tasks() == ["ready"]
    body = web(member).get(status_url).json()
    assert body["status"] == "ready" and body["frames"] and body["legend_url"]
    for viewer in (owner, member, carol):
        image = web(viewer).get(body["frames"][0])
        assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")
    partial = web(owner).get(body["legend_url"], headers={"Range": "bytes=0-7"})
    assert partial.status_code == 206 and partial.content == b"\x89PNG\r\n\x1a\n"
    assert web(stranger).get(status_url).status_code == 404
    assert web(stranger).get(body["frames"][0]).status_code == 404
    code = body["code"]
    assert web(owner).get(f"/api/v1/differences/{code}/files/..%2f..%2fsecret").status_code == 404
    # Asking again finds the same row.
    again = web(carol).post("/api/v1/differences/", json=pair)
    assert again.status_code == 202 and again.json()["code"] == code
    assert ComparisonDifference.objects.count() == 1


def test_a_difference_of_two_videos_is_refused_in_words(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    response = web(owner).post(
        "/api/v1/differences/",
        json={"a": str(published["gradcam"].code), "b": str(published["other_video"].code)},
    )
    assert response.status_code == 400
    assert (
        response.json()["error"]["message"]
        == "No difference for these columns: They explain different videos."
    )
    assert ComparisonDifference.objects.count() == 0


def test_the_owner_shares_a_saved_comparison_by_link_and_others_may_not(
    web: Any, owner: Any, member: Any, stranger: Any, published: dict[str, Any]
) -> None:
    code = save(web(owner), published["gradcam"], published["gradcampp"]).json()["code"]
    body = {"target_type": "comparison", "target": code, "days": 1}
    assert web(member).post("/api/v1/share-links/", json=body).status_code == 403
    assert web(stranger).post("/api/v1/share-links/", json=body).status_code == 404
    response = web(owner).post("/api/v1/share-links/", json=body)
    assert response.status_code == 201, response.text
    link = response.json()
    assert link["target"] == {"type": "comparison", "code": code, "name": "Grad-CAM vs ++"}
    assert web().get(link["url"]).status_code == 200
    assert delete(web(owner), f"/api/v1/share-links/{link['code']}/").status_code == 200
    assert web().get(link["url"]).status_code == 404
