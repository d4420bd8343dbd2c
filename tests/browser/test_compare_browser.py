"""The comparison page in headless Chromium: tick two analyses in the history, open the
comparison, watch the difference row arrive from the worker job, and play every video with the
one control. Followers must stay within one frame of the leader during 30 seconds of playback
(the heatmap videos loop), after seeks and after frame steps, measured in the page from each
video's currentTime and fps; columns at other frame rates align by source timestamp.

Screenshots go to test-artifacts/screens/compare-*.png.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.compare.conftest import compare_results, published  # noqa: F401 - fixtures
from tests.conftest import browser_login, screenshot
from tests.jobs import run_queued_tasks
from tests.web.test_analysis_pages import library, media_root  # noqa: F401 - fixtures
from tests.worker.conftest import demo  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PLAY_SECONDS = 30

# Samples every follower's drift (in its own frames) every 50 ms for `seconds` of playback;
# resolves with the largest, the number of samples and how far the leader got.
MEASURE_DRIFT = """
async (seconds) => {
  const sync = window.compareSync;
  const leader = document.querySelector('[data-compare-video="0"]');
  let worst = 0, samples = 0, loops = 0, last = leader.currentTime, frames = new Set();
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const drift of sync.drift()) worst = Math.max(worst, Math.abs(drift));
    if (leader.currentTime < last - 0.5) loops += 1;
    last = leader.currentTime;
    frames.add(sync.leaderFrame());
    samples += 1;
  }
  return {worst, samples, loops, frames: frames.size, playing: sync.videosPlaying()};
}
"""


def _wait_videos_ready(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('video[data-compare-video]')].every(v => v.readyState >= 2)",
        timeout=30_000,
    )


def _settled_drift(page: Any) -> list[float]:
    page.wait_for_function(
        "() => [...document.querySelectorAll('video[data-compare-video]')].every(v => !v.seeking)"
    )
    page.wait_for_timeout(200)
    return page.evaluate("() => window.compareSync.drift()")


def test_history_checkboxes_open_a_comparison_whose_videos_stay_in_sync_and_show_the_difference(
    browser: Any,
    owner: Any,
    published: dict[str, Any],  # noqa: F811
) -> None:
    from analyses.models import ComparisonDifference

    gradcam, plus = published["gradcam"], published["gradcampp"]
    page = browser
    browser_login(page, owner)

    # ---- the history: "Compare selected" is enabled for 2-4 ticked analyses
    page.goto("/analyses/")
    button = page.locator("[data-testid=compare-selected]")
    assert button.is_disabled()
    page.check(f"tr[data-code='{gradcam.code}'] [data-testid=compare-check]")
    assert button.is_disabled()
    page.check(f"tr[data-code='{plus.code}'] [data-testid=compare-check]")
    assert button.is_enabled()
    screenshot(page, "compare-history-ticked")
    button.click()
    page.wait_for_url(re.compile(r"/compare/\?a="))
    assert page.locator("[data-testid=compare-column]").count() == 2
    assert "Aligned frame by frame" in page.inner_text("[data-testid=compare-alignment]")
    _wait_videos_ready(page)

    # ---- the difference row: requested by the page, computed by the worker job, polled
    for _ in range(100):
        if ComparisonDifference.objects.exists():
            break
        page.wait_for_timeout(100)
    assert run_queued_tasks() == ["ready"]
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-difference-image]');"
        " return img && !img.classList.contains('hidden') && img.naturalWidth > 0; }",
        timeout=30_000,
    )
    page.wait_for_function("() => document.querySelector('[data-difference-legend]').naturalWidth > 0")
    assert "Mean |difference|" in page.inner_text("[data-difference-stats]")

    # ---- 30 seconds of playback: every follower within one frame of the leader
    page.click("[data-testid=compare-play]")
    result = page.evaluate(MEASURE_DRIFT, PLAY_SECONDS)
    assert result["samples"] > PLAY_SECONDS * 10
    assert result["loops"] >= 2, result  # the short heatmap videos looped: real playback, not one pass
    assert all(result["playing"]), result
    assert result["worst"] <= 1.0, result
    screenshot(page, "compare-playing")
    page.click("[data-testid=compare-play]")  # pause

    # ---- seek with the slider, then step frames: still in sync, images follow
    page.fill("[data-testid=compare-slider]", "5")
    assert all(abs(drift) <= 1.0 for drift in _settled_drift(page))
    assert page.evaluate("() => window.compareSync.leaderFrame()") == 5
    page.wait_for_function(
        "() => document.querySelector('[data-compare-image=\"1\"]').src.endsWith('/frames/0005.png')"
    )
    page.wait_for_function(
        "() => document.querySelector('[data-difference-image]').src.endsWith('/frames/0005.png')"
    )
    page.click("[data-testid=compare-step-forward]")
    page.click("[data-testid=compare-step-forward]")
    assert all(abs(drift) <= 1.0 for drift in _settled_drift(page))
    assert page.evaluate("() => window.compareSync.leaderFrame()") == 7
    page.click("[data-testid=compare-step-back]")
    assert all(abs(drift) <= 1.0 for drift in _settled_drift(page))
    assert page.evaluate("() => window.compareSync.leaderFrame()") == 6
    page.wait_for_function(
        "() => document.querySelector('[data-compare-image=\"0\"]').src.endsWith('/frames/0006.png')"
    )
    page.wait_for_function(
        "() => document.querySelector('[data-compare-image=\"1\"]').src.endsWith('/frames/0006.png')"
    )
    assert page.inner_text("[data-testid=compare-frame]").startswith("A: frame 6")
    page.locator("[data-testid=compare-differences]").scroll_into_view_if_needed()
    screenshot(page, "compare-difference")

    # ---- save it under a title: its own address
    page.fill("[data-testid=compare-title-input]", "Grad-CAM against Grad-CAM++")
    page.click("[data-testid=compare-save]")
    page.wait_for_url(re.compile(r"/compare/[0-9a-f-]{36}/$"))
    assert page.inner_text("[data-testid=compare-title]") == "Grad-CAM against Grad-CAM++"


def test_columns_at_other_frame_rates_follow_the_leader_by_source_timestamp(
    browser: Any,
    owner: Any,
    published: dict[str, Any],  # noqa: F811
) -> None:
    four, eight = published["other_video"], published["other_video_8fps"]
    page = browser
    browser_login(page, owner)
    page.goto(f"/compare/?a={four.code}&a={eight.code}")
    assert "Aligned by source timestamp." in page.inner_text("[data-testid=compare-alignment]")
    _wait_videos_ready(page)
    page.click("[data-testid=compare-play]")
    result = page.evaluate(MEASURE_DRIFT, 8)
    assert result["worst"] <= 1.0, result
    assert result["frames"] > 4, result
    page.click("[data-testid=compare-play]")
    page.fill("[data-testid=compare-slider]", "3")
    assert all(abs(drift) <= 1.0 for drift in _settled_drift(page))
    # Same video and sampled frames (only the heatmap videos' rate differs): a difference row.
    assert page.locator("[data-testid=difference-A-B] [data-difference-image]").count() == 1
    screenshot(page, "compare-timestamp-aligned")


def test_choose_layers_of_one_analysis_from_its_page(
    browser: Any, owner: Any, published: dict[str, Any]
) -> None:  # noqa: F811
    gradcam = published["gradcam"]
    page = browser
    browser_login(page, owner)
    page.goto(f"/analyses/{gradcam.code}/")
    page.click("[data-testid=compare-layers-link]")
    boxes = page.locator("[data-testid=choose-layer]")
    assert boxes.count() >= 2
    for index in range(2, boxes.count()):
        boxes.nth(index).uncheck()
    screenshot(page, "compare-choose-layers")
    page.click("[data-testid=choose-submit]")
    page.wait_for_url(re.compile(r"/compare/\?a="))
    assert page.locator("[data-testid=compare-column]").count() == 2
    _wait_videos_ready(page)
    screenshot(page, "compare-layers")
