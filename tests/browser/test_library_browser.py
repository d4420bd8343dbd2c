"""The library pages in headless Chromium: upload a model and a video, watch the video load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from analyses.models import Classifier, Video
from tests.conftest import browser_login, screenshot
from tests.jobs import run_queued_tasks
from tests.web.library_factories import model_files, private_media_root, video_files  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_upload_model_and_video_then_the_video_plays_with_a_duration(
    browser: Any, owner: Any, team: Any, model_files: dict[str, Path], video_files: dict[str, Path]
) -> None:
    page = browser
    browser_login(page, owner)

    page.goto("/classifiers/")
    screenshot(page, "library-classifiers-empty")
    page.set_input_files("#classifier-upload-form input[name=file]", str(model_files["good_h5"]))
    page.fill("#classifier-upload-form input[name=name]", "Tiny C3D")
    page.select_option("#classifier-upload-form select[name=team]", label="Vision Lab")
    page.fill("#classifier-upload-form textarea[name=class_map_text]", "0: Basketball\n1: Biking\n2: Diving")
    page.click("#classifier-upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/classifiers/[0-9a-f-]{36}/$"))
    # The upload answered at once; the page waits for the worker and reloads when it is done.
    page.locator("[data-testid=processing-state]").wait_for()
    screenshot(page, "library-classifier-processing")
    run_queued_tasks()
    page.locator("[data-testid=input-shape]").wait_for()
    assert page.locator("[data-testid=input-shape]").inner_text() == "4 × 16 × 16 × 3"
    assert "[0, 1]" in page.locator("[data-testid=input-scaling]").inner_text()
    assert page.locator("[data-testid=conv3d-layers] tbody tr").count() == 2
    assert "Biking" in page.locator("[data-testid=class-labels]").inner_text()
    screenshot(page, "library-classifier-detail")

    page.goto("/classifiers/")
    assert page.locator("[data-testid=classifier-table] tbody tr").count() == 1
    # A refusal is shown in words on the upload's page once the worker has inspected it.
    page.set_input_files("#classifier-upload-form input[name=file]", str(model_files["lambda"]))
    page.click("#classifier-upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/classifiers/[0-9a-f-]{36}/$"))
    run_queued_tasks()
    reason = page.locator("[data-testid=refusal-reason]")
    reason.wait_for()
    assert "Lambda" in reason.inner_text()
    screenshot(page, "library-classifier-refused")
    assert Classifier.objects.filter(status="ready").count() == 1
    page.goto("/classifiers/")
    assert "Refused" in page.locator("[data-testid=classifier-table]").inner_text()
    screenshot(page, "library-classifiers")

    page.goto("/videos/")
    page.set_input_files("#video-upload-form input[name=file]", str(video_files["avi"]))
    page.fill("#video-upload-form input[name=name]", "Test pattern")
    page.fill("#video-upload-form input[name=expected_class]", "1")
    page.click("#video-upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/videos/[0-9a-f-]{36}/$"))
    page.locator("[data-testid=processing-state]").wait_for()
    run_queued_tasks()
    page.locator("#video-player").wait_for()
    duration = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const video = document.querySelector('#video-player');
            const report = () => resolve(video.duration);
            if (video.readyState >= 1) { report(); return; }
            video.addEventListener('loadedmetadata', report, {once: true});
            video.addEventListener('error', () => reject(new Error('video error ' + (video.error && video.error.code))), {once: true});
            video.load();
        })"""
    )
    assert duration == pytest.approx(2.0, abs=0.2)
    page.evaluate(
        "() => { const v = document.querySelector('#video-player'); v.muted = true; return v.play().catch(() => null); }"
    )
    page.wait_for_function("() => document.querySelector('#video-player').currentTime > 0.2", timeout=15_000)
    page.evaluate("() => document.querySelector('#video-player').pause()")
    screenshot(page, "library-video-detail")

    page.goto("/videos/")
    assert page.locator("[data-testid=video-grid] .card").count() == 1
    page.wait_for_function(
        "() => [...document.images].every(image => image.complete && image.naturalWidth > 0)"
    )
    screenshot(page, "library-videos")
    assert Video.objects.get().expected_class == 1
