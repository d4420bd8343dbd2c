"""The provenance panel and the Verify action over real HTTP, for every persona: owner and team
member may verify (it changes nothing in the analysis), a stranger gets 404 on the action and
the status, anonymous users go to the log-in page; requests are bounded and need CSRF.

The analysis holds REAL engine output (tests/web/test_analysis_pages.py's session fixture); the
re-run itself is the worker tests' and the browser test's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.web.test_analysis_pages import (  # noqa: F401 - fixtures shared with the analysis pages
    engine_results,
    library,
    media_root,
    publish_result,
    queued_analysis,
    wrong_analysis,
)
from tests.worker.conftest import demo  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _verify_url(analysis: Any) -> str:
    return f"/analyses/{analysis.code}/verify/"


def _status_url(analysis: Any, verification: Any) -> str:
    return f"/analyses/{analysis.code}/verifications/{verification.code}/status.json"


def test_provenance_shows_input_hashes_every_parameter_versions_and_raw_map_hashes(
    web: Any, owner: Any, member: Any, wrong_analysis: Any
) -> None:
    manifest = wrong_analysis.manifest
    for user in (owner, member):
        response = web(user).get(f"/analyses/{wrong_analysis.code}/")
        assert response.status_code == 200
        html = response.text
        panel = html[html.index('data-testid="provenance"') : html.index('data-testid="verification"')]
        for record in manifest["inputs"].values():
            assert record["sha256"] in panel
        raw_maps = [record for record in manifest["files"] if record["role"] == "raw_maps"]
        assert len(raw_maps) == len(manifest["model"]["selected_layers"])
        for record in raw_maps:
            assert record["sha256"] in panel and record["layer"] in panel
        for name, value in manifest["engine"].items():
            assert f"<dt>{name}</dt>" in panel and str(value) in panel
        params = manifest["params"]
        for name in [
            *params,
            *(f"preprocess.{key}" for key in params["preprocess"]),
            *(f"limits.{key}" for key in params["limits"]),
        ]:
            if name not in ("preprocess", "limits"):
                assert f'<dt class="mono">{name}</dt>' in panel, name
        assert 'data-testid="verify-button"' in html and 'data-testid="no-verifications"' in html


def test_owner_and_team_member_may_verify_and_a_second_request_while_active_is_refused(
    web: Any, owner: Any, member: Any, wrong_analysis: Any
) -> None:
    from analyses.models import Verification
    from audit.models import AuditEvent

    member_client = web(member)
    response = member_client.post(_verify_url(wrong_analysis))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/analyses/{wrong_analysis.code}/#verification")
    verification = Verification.objects.get(analysis=wrong_analysis)
    assert verification.requested_by == member and verification.status == "queued"
    assert AuditEvent.objects.filter(action="analysis.verify_requested", actor=member).count() == 1

    page = member_client.get(f"/analyses/{wrong_analysis.code}/")
    assert page.status_code == 200
    assert 'data-testid="verification-progress"' in page.text
    assert 'data-testid="verify-button"' not in page.text  # one at a time: no button while active
    status = member_client.get(_status_url(wrong_analysis, verification))
    assert status.status_code == 200 and status.headers["Cache-Control"] == "no-store"
    assert status.json()["status"] == "queued" and status.json()["active"] is True

    owner_client = web(owner)
    again = owner_client.post(_verify_url(wrong_analysis), allow_redirects=True)
    assert again.status_code == 200
    assert "already being verified" in again.text
    assert Verification.objects.filter(analysis=wrong_analysis).count() == 1
    as_json = owner_client.post(_verify_url(wrong_analysis), headers={"Accept": "application/json"})
    assert as_json.status_code == 409 and "already being verified" in as_json.json()["error"]
    assert Verification.objects.filter(analysis=wrong_analysis).count() == 1
    # The analysis itself is unchanged by asking.
    before = wrong_analysis.manifest
    wrong_analysis.refresh_from_db()
    assert wrong_analysis.manifest == before and wrong_analysis.status == "succeeded"


def test_stranger_gets_404_and_anonymous_goes_to_log_in_for_the_action_and_the_status(
    web: Any, owner: Any, stranger: Any, wrong_analysis: Any
) -> None:
    from analyses.models import Verification
    from analyses.runs.verification import verification_request

    verification = verification_request(user=owner, analysis=wrong_analysis)
    stranger_client = web(stranger)
    response = stranger_client.post(_verify_url(wrong_analysis))
    assert response.status_code == 404
    assert stranger_client.get(_status_url(wrong_analysis, verification)).status_code == 404
    anonymous = web()
    for response in (
        anonymous.post(_verify_url(wrong_analysis)),
        anonymous.get(_status_url(wrong_analysis, verification)),
    ):
        assert response.status_code == 302 and "/accounts/login/" in response.headers["Location"]
    assert list(Verification.objects.values_list("requested_by", flat=True)) == [owner.pk]


def test_verify_needs_a_csrf_token_and_a_post(web: Any, owner: Any, wrong_analysis: Any) -> None:
    from analyses.models import Verification

    client = web(owner)
    forged = client.session.post(
        client.url(_verify_url(wrong_analysis)), data={}, allow_redirects=False, timeout=60
    )
    assert forged.status_code == 403
    assert client.get(_verify_url(wrong_analysis)).status_code == 405
    assert not Verification.objects.exists()


def test_a_verification_status_is_found_only_under_its_own_analysis(
    web: Any,
    owner: Any,
    team: Any,
    library: dict[str, Any],
    engine_results: dict[str, Any],
    media_root: Path,
    wrong_analysis: Any,
) -> None:
    from analyses.runs.verification import verification_request

    other = publish_result(
        owner=owner,
        team=team,
        classifier=library["classifier"],
        video=library["right_video"],
        result=engine_results["right"],
        media_root=media_root,
    )
    verification = verification_request(user=owner, analysis=other)
    client = web(owner)
    assert client.get(_status_url(other, verification)).status_code == 200
    assert client.get(_status_url(wrong_analysis, verification)).status_code == 404


def test_each_user_may_have_only_a_few_verifications_active_at_once(
    web: Any, owner: Any, team: Any, library: dict[str, Any], engine_results: dict[str, Any], media_root: Path
) -> None:
    from analyses.models import Verification
    from analyses.runs.verification import VERIFICATIONS_ACTIVE_PER_USER

    analyses = [
        publish_result(
            owner=owner,
            team=team,
            classifier=library["classifier"],
            video=library["right_video"],
            result=engine_results["right"],
            media_root=media_root,
        )
        for _ in range(VERIFICATIONS_ACTIVE_PER_USER + 1)
    ]
    client = web(owner)
    for analysis in analyses[:-1]:
        assert client.post(_verify_url(analysis)).status_code == 302
    refused = client.post(_verify_url(analyses[-1]), allow_redirects=True)
    assert refused.status_code == 200
    assert re.search(r"You already have \d+ verifications queued or running", refused.text)
    assert Verification.objects.count() == VERIFICATIONS_ACTIVE_PER_USER
    assert not Verification.objects.filter(analysis=analyses[-1]).exists()


def test_an_analysis_without_results_cannot_be_verified(web: Any, owner: Any, queued_analysis: Any) -> None:
    from analyses.models import Verification

    client = web(owner)
    page = client.get(f"/analyses/{queued_analysis.code}/")
    assert page.status_code == 200 and 'data-testid="verify-button"' not in page.text
    response = client.post(_verify_url(queued_analysis), allow_redirects=True)
    assert (
        response.status_code == 200
        and "Only a finished analysis with results can be verified" in response.text
    )
    assert not Verification.objects.exists()


def test_finished_and_failed_verdicts_are_listed_with_who_asked_and_when(
    web: Any, owner: Any, member: Any, wrong_analysis: Any
) -> None:
    from django.utils import timezone

    from analyses.models import Verification

    layer = wrong_analysis.manifest["model"]["selected_layers"][0]
    Verification.objects.create(
        analysis=wrong_analysis,
        requested_by=member,
        status="failed",
        finished_at=timezone.now(),
        error_message="The re-run did not complete: the engine was stopped.",
    )
    Verification.objects.create(
        analysis=wrong_analysis,
        requested_by=owner,
        status="finished",
        finished_at=timezone.now(),
        progress=1.0,
        verdict={
            "outcome": "differs",
            "summary": "Differs in 1 of 2 layers (largest difference 0.333 of a map's maximum).",
            "layers": [
                {
                    "layer": layer,
                    "identical": False,
                    "max_relative_diff": 1 / 3,
                    "stored_matches_record": False,
                    "classes": [{"class": 0, "raw": 1 / 3, "upsampled": 0.0}],
                }
            ],
            "versions_changed": [{"name": "numpy", "before": "2.4.5", "after": "2.4.6"}],
            "prediction": {"changed": False},
        },
    )
    response = web(member).get(f"/analyses/{wrong_analysis.code}/")
    assert response.status_code == 200
    html = response.text
    section = html[html.index('data-testid="verification"') :]
    assert section.index("asked by <strong>olivia_owner</strong>") < section.index(
        "asked by <strong>mark_member</strong>"
    )
    assert "Differs in 1 of 2 layers" in section and "0.333" in section and "stored file changed" in section
    assert "numpy 2.4.5 → 2.4.6" in section
    assert "not verified" in section and "The re-run did not complete" in section
