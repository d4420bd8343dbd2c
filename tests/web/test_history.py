"""The analysis history (/analyses/): what each persona sees, every filter and their
combinations, bad filter values, pagination bounds, the classifier/video pages' lists, the
denormalised columns, and a constant number of SQL queries at 10,000 analyses.

Pages are fetched over real HTTP from the live server (`web`), except the query-count pins,
which need the request in the test's own thread (Django's test client).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.history_factories import bulk_history, history_world

ALL_TEAM = {"team-correct-walk", "team-wrong-run", "team-failed", "member-shared-beta", "member-shared-jump"}
OWNER_SEES = ALL_TEAM | {"owner-private-cat", "owner-private-queued"}


@pytest.fixture
def world(owner: Any, member: Any, stranger: Any, team: Any) -> dict[str, Any]:
    return history_world(owner=owner, member=member, stranger=stranger, team=team)


def titles(response: Any, world: dict[str, Any]) -> set[str]:
    """The analyses listed on a page, by title (looked up through their codes in the rows)."""
    assert response.status_code == 200, response.status_code
    codes = set(re.findall(r'<tr data-code="([0-9a-f-]{36})"', response.text))
    by_code = {str(analysis.code): title for title, analysis in world["analyses"].items()}
    return {by_code[code] for code in codes}


def ordered_titles(response: Any, world: dict[str, Any]) -> list[str]:
    assert response.status_code == 200
    by_code = {str(analysis.code): title for title, analysis in world["analyses"].items()}
    return [by_code[code] for code in re.findall(r'<tr data-code="([0-9a-f-]{36})"', response.text)]


# --------------------------------------------------------------------------- who sees what
def test_owner_member_and_stranger_each_see_exactly_their_history(
    web: Any, owner: Any, member: Any, stranger: Any, world: dict[str, Any]
) -> None:
    assert titles(web(owner).get("/analyses/"), world) == OWNER_SEES
    assert titles(web(member).get("/analyses/"), world) == ALL_TEAM
    response = web(stranger).get("/analyses/")
    assert response.status_code == 200
    assert titles(response, world) == {"stranger-hidden"}
    for title in OWNER_SEES:
        assert title not in response.text
    assert "Kinetics" not in response.text and "walking" not in response.text
    assert web().get("/analyses/").status_code == 302


def test_rows_show_thumbnail_classifier_video_method_prediction_badge_status_owner_team_and_date(
    web: Any, owner: Any, world: dict[str, Any]
) -> None:
    response = web(owner).get("/analyses/?q=team-wrong-run")
    assert titles(response, world) == {"team-wrong-run"}
    row = response.text[response.text.index("<tbody>") :]
    for text in (
        "Kinetics",
        "street",
        "layercam",
        "running",
        "/ walking",
        'badge-failed">wrong',
        "55.0% confident",
        "Succeeded",
        "olivia_owner · Vision Lab",
        "2026-03-02 12:00",
    ):
        assert text in row, text
    assert "history-thumb" in row
    assert 'badge-succeeded">correct' in web(owner).get("/analyses/?q=team-correct-walk").text


def test_newest_first_by_default(web: Any, owner: Any, world: dict[str, Any]) -> None:
    assert ordered_titles(web(owner).get("/analyses/"), world)[:3] == [
        "member-shared-jump",
        "member-shared-beta",
        "owner-private-queued",
    ]


# --------------------------------------------------------------------------- every filter
FILTER_CASES = [
    ("classifier={kinetics}", {"team-correct-walk", "team-wrong-run", "team-failed", "member-shared-jump"}),
    ("video={lab}", {"team-failed", "member-shared-beta", "member-shared-jump"}),
    ("status=failed", {"team-failed"}),
    ("status=queued", {"owner-private-queued"}),
    ("outcome=correct", {"team-correct-walk", "member-shared-jump"}),
    ("outcome=wrong", {"team-wrong-run", "owner-private-cat"}),
    ("outcome=unknown", {"team-failed", "owner-private-queued", "member-shared-beta"}),
    ("predicted=1", {"team-wrong-run", "member-shared-beta"}),
    ("predicted=running", {"team-wrong-run"}),
    ("predicted=CAT", {"owner-private-cat"}),
    ("expected=0", {"team-correct-walk", "team-wrong-run"}),
    ("expected=jumping", {"team-failed", "member-shared-jump"}),
    ("expected=dog", {"owner-private-cat"}),
    ("method=hirescam", {"owner-private-queued", "member-shared-jump"}),
    ("method=gradcam%2B%2B", {"owner-private-cat"}),
    ("owner=mark_member", {"member-shared-beta", "member-shared-jump"}),
    ("owner=olivia_owner", OWNER_SEES - {"member-shared-beta", "member-shared-jump"}),
    ("team={team}", ALL_TEAM),
    ("shared=true", {"member-shared-beta", "member-shared-jump"}),
    (
        "created_after=2026-03-03&created_before=2026-03-05",
        {"team-failed", "owner-private-cat", "owner-private-queued"},
    ),
    ("created_after=2026-03-07", {"member-shared-jump"}),
    ("created_before=2026-03-01", {"team-correct-walk"}),
    ("q=garden", {"owner-private-cat", "owner-private-queued"}),
    ("q=PETS", {"owner-private-cat", "owner-private-queued"}),
    ("q=jump", {"team-failed", "member-shared-jump"}),  # the class label "jumping"
    ("q=mark", {"member-shared-beta", "member-shared-jump"}),
    ("q=private-c", {"owner-private-cat"}),
    ("q=hidden", set()),  # the stranger's label and title stay invisible
    # combinations
    ("classifier={kinetics}&outcome=correct", {"team-correct-walk", "member-shared-jump"}),
    ("classifier={kinetics}&video={street}&method=layercam", {"team-wrong-run"}),
    ("status=succeeded&owner=olivia_owner&q=walk", {"team-correct-walk", "team-wrong-run"}),
    ("shared=true&outcome=correct&q=jump", {"member-shared-jump"}),
    ("team={team}&predicted=1&created_after=2026-03-06", {"member-shared-beta"}),
    ("video={garden}&status=failed", set()),
]


def _query(template: str, world: dict[str, Any], team: Any) -> str:
    return template.format(
        team=team.code,
        **{name: obj.code for name, obj in {**world["classifiers"], **world["videos"]}.items()},
    )


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES, ids=[case[0] for case in FILTER_CASES])
def test_each_filter_and_combination_narrows_the_owner_history(
    web: Any, owner: Any, team: Any, world: dict[str, Any], query: str, expected: set[str]
) -> None:
    response = web(owner).get("/analyses/?" + _query(query, world, team))
    assert titles(response, world) == expected
    assert "filter-errors" not in response.text


def test_member_filters_apply_within_what_the_member_may_see(
    web: Any, owner: Any, member: Any, team: Any, world: dict[str, Any]
) -> None:
    client = web(member)
    assert titles(client.get("/analyses/?shared=true"), world) == {
        "team-correct-walk",
        "team-wrong-run",
        "team-failed",
    }
    # The owner's private classifier is not a choice for the member: a form error, nothing leaks.
    response = client.get(f"/analyses/?classifier={world['classifiers']['pets'].code}")
    assert response.status_code == 200 and "filter-errors" in response.text
    assert "owner-private" not in response.text
    assert titles(client.get("/analyses/?predicted=cat"), world) == set()
    assert titles(client.get("/analyses/?q=cat"), world) == set()


def test_stranger_filtering_by_someone_elses_classifier_video_team_or_owner_sees_nothing(
    web: Any, stranger: Any, team: Any, world: dict[str, Any]
) -> None:
    client = web(stranger)
    for query in (
        f"classifier={world['classifiers']['kinetics'].code}",
        f"video={world['videos']['street'].code}",
        f"team={team.code}",
        "owner=olivia_owner",
        "shared=true",
    ):
        response = client.get("/analyses/?" + query)
        assert response.status_code == 200
        assert titles(response, world) <= {"stranger-hidden"}, query
        assert "team-correct-walk" not in response.text and "Kinetics" not in response.text


def test_sorting_by_date_confidence_classifier_and_video(web: Any, owner: Any, world: dict[str, Any]) -> None:
    client = web(owner)
    assert ordered_titles(client.get("/analyses/?sort=date"), world)[0] == "team-correct-walk"
    by_confidence = ordered_titles(client.get("/analyses/?sort=-confidence"), world)
    assert by_confidence[:5] == [
        "member-shared-jump",
        "team-correct-walk",
        "owner-private-cat",
        "member-shared-beta",
        "team-wrong-run",
    ]  # then the rows without a confidence
    assert (
        ordered_titles(client.get("/analyses/?sort=confidence&status=succeeded"), world)[0]
        == "team-wrong-run"
    )
    assert ordered_titles(client.get("/analyses/?sort=classifier"), world)[:4] == [
        "member-shared-jump",
        "team-failed",
        "team-wrong-run",
        "team-correct-walk",
    ]  # Kinetics first (newest first within it)
    assert ordered_titles(client.get("/analyses/?sort=video"), world)[0] == "owner-private-queued"  # garden


def test_the_filter_form_keeps_the_values_so_the_url_is_the_bookmark(
    web: Any, owner: Any, world: dict[str, Any]
) -> None:
    kinetics = world["classifiers"]["kinetics"]
    response = web(owner).get(
        f"/analyses/?classifier={kinetics.code}&status=succeeded&q=walk&sort=-confidence"
    )
    assert f'<option value="{kinetics.code}" selected>' in response.text
    assert '<option value="succeeded" selected>' in response.text
    assert 'value="walk"' in response.text and '<option value="-confidence" selected>' in response.text


# --------------------------------------------------------------------------- bad values
BAD_VALUES = [
    ("classifier=not-a-uuid", "Classifier"),
    ("classifier=00000000-0000-0000-0000-000000000000", "Classifier"),
    ("video=12345", "Video"),
    ("team=abc", "Team"),
    ("owner=nobody_at_all", "Owner"),
    ("status=exploded", "Status"),
    ("outcome=maybe", "Correct / wrong"),
    ("method=magic", "Method"),
    ("sort=password", "Sort by"),
    ("predicted=99999999999999999999", "Predicted class"),
    ("expected=-1", "Expected class"),
    ("predicted=" + "x" * 500, "Predicted class"),
    ("q=" + "y" * 5000, "Search"),
    ("created_after=yesterday", "Date"),
    ("created_before=2026-13-45", "Date"),
    ("created_after=99999-01-01", "Date"),
]


@pytest.mark.parametrize(("query", "field"), BAD_VALUES, ids=[case[0][:40] for case in BAD_VALUES])
def test_bad_filter_values_give_a_form_error_and_are_ignored_never_a_500(
    web: Any, owner: Any, world: dict[str, Any], query: str, field: str
) -> None:
    response = web(owner).get("/analyses/?" + query)
    assert response.status_code == 200
    assert 'data-testid="filter-errors"' in response.text
    assert f"<li>{field}:" in response.text
    assert titles(response, world) == OWNER_SEES  # the bad filter is ignored, nothing else changes


@pytest.mark.parametrize(
    "query",
    [
        "predicted=0001-01-01",
        "shared=banana",
        "created_after=0001-01-01",
        "page=-3",
        "q=%00",
        "predicted=%F0%9F%90%88",
    ],
)
def test_odd_values_are_ignored_or_matched_never_a_500(
    web: Any, owner: Any, world: dict[str, Any], query: str
) -> None:
    response = web(owner).get("/analyses/?" + query)
    assert response.status_code == 200
    titles(response, world)


def test_pagination_bounds(web: Any, owner: Any, world: dict[str, Any], settings: Any) -> None:
    from analyses.models import Analysis
    from analyses.runs import views

    extra = world["analyses"]["team-correct-walk"]
    Analysis.objects.bulk_create(
        [
            Analysis(
                owner=extra.owner,
                team=extra.team,
                classifier=extra.classifier,
                video=extra.video,
                title=f"more {i}",
            )
            for i in range(2 * views.HISTORY_PAGE_SIZE)
        ]
    )
    client = web(owner)
    total = len(OWNER_SEES) + 2 * views.HISTORY_PAGE_SIZE
    last_page = -(-total // views.HISTORY_PAGE_SIZE)
    first = client.get("/analyses/")
    assert first.status_code == 200 and f"of {total} analyses" in first.text
    assert first.text.count('<tr data-code="') == views.HISTORY_PAGE_SIZE
    for page, shown in (("abc", 1), ("0", 1), ("999999", last_page), ("9" * 40, 1), ("", 1), ("2", 2)):
        response = client.get(f"/analyses/?page={page}")
        assert response.status_code == 200, page
        assert f"Page {shown} of {last_page}" in response.text, page
    # Page links keep the filters.
    filtered = client.get(f"/analyses/?classifier={extra.classifier.code}")
    assert f"classifier={extra.classifier.code}&amp;page=2" in filtered.text


# --------------------------------------------------------------------------- library pages
def test_classifier_and_video_pages_list_their_analyses_through_the_history(
    web: Any, owner: Any, member: Any, stranger: Any, world: dict[str, Any]
) -> None:
    kinetics = world["classifiers"]["kinetics"]
    response = web(member).get(f"/classifiers/{kinetics.code}/")
    assert response.status_code == 200
    assert titles(response, world) == {
        "team-correct-walk",
        "team-wrong-run",
        "team-failed",
        "member-shared-jump",
    }
    assert (
        f'href="/analyses/?classifier={kinetics.code}"' in response.text
        and "All 4 in the history" in response.text
    )
    lab = world["videos"]["lab"]
    response = web(owner).get(f"/videos/{lab.code}/")
    assert titles(response, world) == {"team-failed", "member-shared-beta", "member-shared-jump"}
    assert f'href="/analyses/?video={lab.code}"' in response.text
    # The member sees the owner's private analyses nowhere, even on a page they may open.
    garden_owner_view = web(owner).get(f"/videos/{world['videos']['garden'].code}/")
    assert titles(garden_owner_view, world) == {"owner-private-cat", "owner-private-queued"}
    assert web(stranger).get(f"/classifiers/{kinetics.code}/").status_code == 404


# --------------------------------------------------------------------------- denormalised columns
def test_publish_writes_confidence_and_correctness(owner: Any, world: dict[str, Any]) -> None:
    from analyses.models import Analysis
    from analyses.runs import state

    for expected, predicted, correct in ((2, 2, True), (0, 2, False), (None, 2, None)):
        analysis = world["analyses"]["team-failed"]
        Analysis.objects.filter(pk=analysis.pk).update(
            status="running", worker_lease="test:1:1", attempts=1, expected_class=expected
        )
        attempt = state.Attempt(analysis_id=analysis.pk, lease="test:1:1", number=1)
        fields = {"predicted_class": predicted, "predictions": {"probabilities": [0.1, 0.2, 0.7]}}
        assert state.analysis_publish(attempt=attempt, results_dir="analyses/x/attempt-1", fields=fields)
        analysis.refresh_from_db()
        assert (analysis.confidence, analysis.is_correct, analysis.status) == (0.7, correct, "succeeded")
    assert state.prediction_confidence(predictions={"probabilities": [0.5]}, predicted_class=3) is None
    assert state.prediction_confidence(predictions={"probabilities": ["x"]}, predicted_class=0) is None


def test_the_data_migration_fills_the_columns_of_existing_rows(world: dict[str, Any]) -> None:
    import importlib

    from django.apps import apps

    from analyses.models import Analysis

    Analysis.objects.update(method="", confidence=None, is_correct=None)
    importlib.import_module("analyses.migrations.0006_history_columns_filled").fill(apps, None)
    walk = Analysis.objects.get(title="team-wrong-run")
    assert (walk.method, walk.confidence, walk.is_correct) == ("layercam", 0.55, False)
    assert Analysis.objects.get(title="member-shared-beta").is_correct is None
    assert Analysis.objects.get(title="team-failed").confidence is None


# --------------------------------------------------------------------------- scale
QUERY_PIN = 14


@pytest.fixture
def ten_thousand(db: None) -> dict[str, Any]:
    return bulk_history(total=10_000, users=50)


SCALE_QUERIES = [
    "",
    "status=succeeded",
    "outcome=wrong",
    "predicted=2",
    "expected=running",
    "method=layercam",
    "shared=true",
    "owner=bench_user_005",
    "created_after=2026-01-01&created_before=2027-01-01",
    "q=waving",
    "sort=-confidence",
    "sort=classifier",
    "sort=video",
    "page=999999",
]


def test_history_runs_a_constant_number_of_queries_at_ten_thousand_analyses(
    ten_thousand: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    from django.test import Client

    from analyses.models import Analysis

    assert Analysis.objects.count() == 10_000
    user = ten_thousand["users"][0]
    client = Client()
    client.force_login(user)
    team = ten_thousand["teams"][0]
    queries = [
        *SCALE_QUERIES,
        f"classifier={ten_thousand['classifiers'][5].code}",
        f"video={ten_thousand['videos'][5].code}",
        f"team={team.code}",
        f"classifier={ten_thousand['classifiers'][5].code}&outcome=correct&q=clip&sort=-confidence",
    ]
    for query in queries:
        with django_assert_max_num_queries(QUERY_PIN):
            response = client.get("/analyses/?" + query)
        assert response.status_code == 200, query
        assert "filter-errors" not in response.content.decode(), query
    with django_assert_max_num_queries(QUERY_PIN + 6):  # the classifier page's own reads + its list
        assert client.get(f"/classifiers/{ten_thousand['classifiers'][5].code}/").status_code == 200
