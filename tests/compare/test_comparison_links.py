"""Share links for saved comparisons over real HTTP: someone with no account sees the comparison
read-only, every column's files and an already computed difference row through the link's own
checked views, and nothing else; revoked and expired links, and links whose maker may no longer
share every analysis, open nothing. Only someone who may share every analysis and its inputs
makes one."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from tests.jobs import run_queued_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def save_comparison(client: Any, *analyses: Any) -> str:
    response = client.post(
        "/compare/save/",
        data=[*[("a", str(analysis.code)) for analysis in analyses], ("title", "Grad-CAM vs ++")],
    )
    assert response.status_code == 302, response.text[:300]
    return response.headers["Location"].rstrip("/").split("/")[-1]


def make_comparison_link(client: Any, code: str) -> str:
    response = client.post(f"/compare/{code}/links/", data={"days": "7", "label": "review"})
    assert response.status_code == 200, response.text[:300]
    match = re.search(r'value="http[^"]+/s/([A-Za-z0-9_-]+)/"', response.text)
    assert match, "the new link is shown once"
    return match.group(1)


def column_files(token: str, analysis: Any) -> list[str]:
    roles: dict[str, str] = {}
    for record in analysis.manifest["files"]:
        roles.setdefault(record["role"], record["path"])
    return [f"/s/{token}/a/{analysis.code}/files/{path}" for path in ["manifest.json", *roles.values()]]


def test_a_comparison_link_shows_it_read_only_with_every_column_file_and_nothing_else(
    web: Any, owner: Any, published: dict[str, Any]
) -> None:
    from analyses.models import ComparisonDifference, ShareLink

    gradcam, plus, other = published["gradcam"], published["gradcampp"], published["other_video"]
    code = save_comparison(web(owner), gradcam, plus)
    token = make_comparison_link(web(owner), code)
    anonymous = web()
    page = anonymous.get(f"/s/{token}/")
    assert page.status_code == 200
    assert "Shared comparison (read-only)" in page.text and "Grad-CAM vs ++" in page.text
    assert (
        'data-testid="compare-save-form"' not in page.text and 'data-testid="compare-delete"' not in page.text
    )
    assert f"/analyses/{gradcam.code}/" not in page.text and "/compare/differences/" not in page.text
    assert '"status": "unavailable"' in page.text  # no difference computed yet, and none can be asked for
    for path in [*column_files(token, gradcam), *column_files(token, plus)]:
        response = anonymous.get(path)
        assert response.status_code == 200, path
    for path in column_files(token, other)[:3]:
        assert anonymous.get(path).status_code == 404, path  # not a column of this comparison
    assert anonymous.get(f"/s/{token}/download.zip").status_code == 404

    # Once someone signed in computes the difference, the link shows it through its own view.
    web(owner).post("/compare/differences/", data={"a": f"{gradcam.code}:", "b": f"{plus.code}:"})
    assert run_queued_tasks() == ["ready"]
    difference = ComparisonDifference.objects.get()
    page = anonymous.get(f"/s/{token}/")
    legend = f"/s/{token}/d/{difference.code}/files/legend.png"
    assert page.status_code == 200 and legend in page.text
    response = anonymous.get(legend)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert anonymous.get(f"/s/{token}/d/{difference.code}/files/../secret").status_code == 404

    link = ShareLink.objects.get()
    assert link.comparison is not None and link.use_count == 2
    response = web(owner).post(f"/links/{link.code}/revoke/")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/compare/{code}/")
    for path in [f"/s/{token}/", legend, *column_files(token, gradcam)[:2]]:
        assert anonymous.get(path).status_code == 404, path


def test_only_someone_who_may_share_every_analysis_makes_a_comparison_link_and_it_expires(
    web: Any, owner: Any, member: Any, stranger: Any, published: dict[str, Any]
) -> None:
    from analyses.models import ShareLink

    gradcam, plus = published["gradcam"], published["gradcampp"]
    code = save_comparison(web(owner), gradcam, plus)
    # A team member sees the comparison, but may not share the owner's analyses.
    member_code = save_comparison(web(member), gradcam, plus)
    response = web(member).post(f"/compare/{member_code}/links/", data={"days": "7"}, allow_redirects=True)
    assert response.status_code == 200 and "can make a share link" in response.text
    response = web(member).post(f"/compare/{code}/links/", data={"days": "7"}, allow_redirects=True)
    assert response.status_code == 200 and "Only the owner of this comparison" in response.text
    assert web(stranger).post(f"/compare/{code}/links/", data={"days": "7"}).status_code == 404
    assert not ShareLink.objects.exists()

    token = make_comparison_link(web(owner), code)
    assert web().get(f"/s/{token}/").status_code == 200
    ShareLink.objects.update(expires_at=gradcam.created_at - timedelta(days=1))
    assert web().get(f"/s/{token}/").status_code == 404

    token = make_comparison_link(web(owner), code)
    assert web().get(f"/s/{token}/").status_code == 200
    owner.is_active = False
    owner.save()
    assert web().get(f"/s/{token}/").status_code == 404


def test_a_comparison_opens_for_a_user_both_analyses_are_shared_with_until_one_share_is_revoked(
    web: Any, owner: Any, stranger: Any, published: dict[str, Any]
) -> None:
    from analyses.models import Share

    gradcam, plus = published["gradcam"], published["gradcampp"]
    code = save_comparison(web(owner), gradcam, plus)
    paths = [f"/compare/{code}/", f"/compare/?a={gradcam.code}&a={plus.code}"]
    for path in paths:
        assert web(stranger).get(path).status_code == 404
    for analysis in (gradcam, plus):
        response = web(owner).post(
            f"/share/analysis/{analysis.code}/", data={"username": stranger.username, "with_inputs": "on"}
        )
        assert response.status_code == 302
    for path in paths:
        assert web(stranger).get(path).status_code == 200, path
    file_path = f"/analyses/{plus.code}/files/manifest.json"
    assert web(stranger).get(file_path).status_code == 200
    assert web(stranger).post(f"/compare/{code}/delete/").status_code == 403
    response = web(stranger).post(f"/compare/{code}/links/", data={"days": "7"}, allow_redirects=True)
    assert response.status_code == 200 and "can make a share link" in response.text

    share = Share.objects.get(analysis=plus, user=stranger)
    assert web(owner).post(f"/shares/{share.code}/revoke/").status_code == 302
    for path in [*paths, file_path]:
        assert web(stranger).get(path).status_code == 404, path
