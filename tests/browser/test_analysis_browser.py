"""The analysis workflow in headless Chromium with a REAL django-q2 cluster and the real engine:
submit the form (after a preview), watch the progress reach 100 %, open each view, and play the
heatmap videos with the one shared control — they must advance together, frame for frame.

Screenshots go to test-artifacts/screens/analysis-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import browser_login, screenshot
from tests.worker.conftest import (  # noqa: F401 - fixtures reused from the worker tests
    demo,
    demo_classifier,
    demo_video_entry,
    make_video,
    media_root,
    module_media_root,
    start_cluster,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

ANALYSIS_TIMEOUT_MS = 240_000


def _video_times(page: Any) -> list[float]:
    return page.eval_on_selector_all("video[data-sync-video]", "videos => videos.map(v => v.currentTime)")


def test_submit_watch_progress_open_each_view_and_play_all_videos_in_sync(
    browser: Any, owner: Any, demo: dict[str, Any], demo_classifier: Any, media_root: Path, start_cluster: Any
) -> None:
    from analyses.models import Analysis

    entry = demo_video_entry(demo, mislabelled=True)
    video = make_video(
        owner=owner,
        video_path=Path(entry["path"]),
        media_root=media_root,
        expected_class=entry["labelled_class"],
    )
    cluster = start_cluster()
    page = browser
    browser_login(page, owner)

    # ---- the form, with the preview of the frames the model will see
    page.goto(f"/analyses/new/?classifier={demo_classifier.code}&video={video.code}")
    assert page.input_value("select[name=expected_class]") == str(entry["labelled_class"])
    assert page.locator("input[name=layers]:checked").count() == len(demo_classifier.conv3d_layers)
    page.click("[data-testid=preview-button]")
    page.wait_for_function(
        "() => { const v = document.querySelector('[data-preview-video]'); return v && v.readyState >= 2; }",
        timeout=60_000,
    )
    assert page.locator("[data-preview-frames] li").count() == demo_classifier.input_shape[0]
    screenshot(page, "analysis-form")

    # ---- the same preview on its own page (what the form links to without JavaScript)
    from analyses.models import Preview

    preview = Preview.objects.filter(owner=owner).latest("created_at")
    page.goto(f"/analyses/preview/{preview.code}/")
    assert page.locator("[data-testid=preview-scaling]").inner_text().startswith("Scaling: [0, 1]")
    assert page.locator(".preview-frames li").count() == demo_classifier.input_shape[0]
    screenshot(page, "analysis-preview-page")
    page.goto(f"/analyses/new/?classifier={demo_classifier.code}&video={video.code}")

    # ---- submit and watch the live progress
    statuses: list[dict[str, Any]] = []
    page.on(
        "response",
        lambda response: (
            statuses.append(response.json())
            if response.url.endswith("/status.json") and response.ok
            else None
        ),
    )
    page.click("[data-testid=run-button]")
    page.wait_for_url(re.compile(r"/analyses/[0-9a-f-]{36}/$"))
    analysis = Analysis.objects.get()
    assert page.locator("[data-testid=progress-card]").is_visible()
    page.wait_for_function(
        "() => parseInt(document.querySelector('[data-percent]').textContent) > 0",
        timeout=ANALYSIS_TIMEOUT_MS,
    )
    screenshot(page, "analysis-progress")
    page.wait_for_selector("[data-testid=prediction-card]", timeout=ANALYSIS_TIMEOUT_MS)
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", (analysis.error_message, cluster.log())
    progress_seen = [status["progress"] for status in statuses]
    assert progress_seen and progress_seen[-1] == 100 and statuses[-1]["status"] == "succeeded"
    assert any(status["status"] in ("queued", "running") for status in statuses)
    assert progress_seen == sorted(progress_seen)  # never goes backwards

    # ---- heatmap videos: one control plays all of them, frame-synchronised
    layers = analysis.manifest["model"]["selected_layers"]
    fps = float(analysis.manifest["params"]["video_fps"])
    videos = page.locator("video[data-sync-video]")
    assert videos.count() == len(layers) + 1
    page.wait_for_function(
        "() => [...document.querySelectorAll('video[data-sync-video]')].every(v => v.readyState >= 2)",
        timeout=30_000,
    )
    screenshot(page, "analysis-result-videos")
    assert max(_video_times(page)) < 1 / fps  # all at frame 0 before playing
    page.click("[data-testid=sync-play]")
    samples = []
    for _ in range(3):
        page.wait_for_timeout(600)
        samples.append(_video_times(page))
    page.click("[data-testid=sync-play]")  # pause
    for times in samples:
        assert max(times) - min(times) <= 1 / fps, times
    assert min(samples[0]) > 0 and min(samples[-1]) > max(samples[0])  # all advanced, together
    frame_label = page.text_content("[data-testid=sync-frame]")
    assert frame_label and not frame_label.startswith("frame 0 ")
    page.fill("[data-testid=sync-slider]", "3")
    page.wait_for_function("() => document.querySelector('[data-sync-player]').dataset.currentFrame === '3'")
    assert all(abs(time - 3.5 / fps) < 1e-2 for time in _video_times(page))

    # ---- heatmap images: a layer, a frame slider, click to enlarge
    page.click("[data-testid=tab-images]")
    assert page.locator(".frame-grid:not(.hidden) .frame-tile").count() == len(
        analysis.manifest["preprocess"]["source_frame_indices"]
    )
    page.select_option("[data-testid=layer-pick]", "1")
    page.fill("[data-testid=image-slider]", "5")
    current = page.get_attribute("[data-image-current]", "src") or ""
    assert current.endswith("/layers/01/frames/0005.png")
    page.wait_for_function("() => document.querySelector('[data-image-current]').naturalWidth > 0")
    screenshot(page, "analysis-result-images")
    page.click("[data-enlarge-current]")
    page.wait_for_selector("dialog[data-lightbox][open]")
    screenshot(page, "analysis-result-lightbox")
    page.keyboard.press("Escape")

    # ---- inference maps: the prediction is wrong, so they exist: start / middle / end per layer
    page.click("[data-testid=tab-inference]")
    assert page.locator("#tab-inference .inference-row").count() == len(layers)
    assert page.locator("#tab-inference .inference-row img").count() == 3 * len(layers)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#tab-inference img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "analysis-result-inference")

    # ---- the list shows it, finished, with its verdict
    page.goto("/analyses/")
    row = page.locator(f"tr[data-code='{analysis.code}']")
    assert "succeeded" in row.inner_text().lower() and "wrong" in row.inner_text().lower()
    screenshot(page, "analysis-list")
