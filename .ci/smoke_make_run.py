"""CI: the README's main command on this (fresh) clone, used as a newcomer would.

Starts `make run` in the background, waits until the login page answers, logs in as the demo
user over HTTP, runs one analysis of the mislabelled demo video through the pages until it
succeeds, checks its result page shows the inference maps, then stops everything. Exits
non-zero, with the tail of the `make run` log, when any step fails or takes too long.

Usage: .venv/bin/python .ci/smoke_make_run.py [--port 8765]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 1200  # installs nothing new after `make test`, but trains the demo once
ANALYSIS_TIMEOUT_SECONDS = 600
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password-3d"


class SmokeFailure(Exception):
    pass


def wait_for_login_page(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SmokeFailure(f"`make run` exited with status {process.returncode} before serving")
        try:
            if requests.get(f"{base}/accounts/login/", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise SmokeFailure(f"the login page did not answer within {START_TIMEOUT_SECONDS} s")


def log_in(base: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=30)
    response = session.post(
        f"{base}/accounts/login/",
        data={
            "username": DEMO_USER,
            "password": DEMO_PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
        allow_redirects=False,
        timeout=30,
    )
    if response.status_code != 302 or "/accounts/login/" in response.headers.get("Location", ""):
        raise SmokeFailure(f"logging in as {DEMO_USER!r} failed (HTTP {response.status_code})")
    return session


def mislabelled_video_name() -> tuple[str, int]:
    demo = json.loads((REPO / "var" / "demo" / "demo.json").read_text())
    for entry in demo["videos"]:
        if entry["labelled_class"] != entry["true_class"]:
            return str(entry.get("name") or Path(entry["path"]).stem), int(entry["labelled_class"])
    raise SmokeFailure("the demo has no mislabelled video")


def form_data(page: str) -> dict[str, Any]:
    match = re.search(r'<script id="analysis-form-data" type="application/json">(.*?)</script>', page, re.S)
    if match is None:
        raise SmokeFailure("the new-analysis page has no form data")
    return json.loads(match.group(1))


def run_analysis(base: str, session: requests.Session) -> str:
    page = session.get(f"{base}/analyses/new/", timeout=30)
    if page.status_code != 200:
        raise SmokeFailure(f"/analyses/new/ answered {page.status_code}")
    data = form_data(page.text)
    name, labelled = mislabelled_video_name()
    videos = [code for code, video in data["videos"].items() if video["name"] == name]
    if len(data["classifiers"]) != 1 or len(videos) != 1:
        raise SmokeFailure(f"expected the demo classifier and video {name!r}, found {data}")
    response = session.post(
        f"{base}/analyses/new/",
        data={
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "classifier": next(iter(data["classifiers"])),
            "video": videos[0],
            "expected_class": str(labelled),
            "method": "gradcam",
            "pooling": "global",
            "bbox_mode": "otsu",
            "bbox_threshold": "0.5",
            "colormap": "jet",
            "alpha": "0.3",
            "frame_stride": "2",
            "frame_offset": "1",
            "resize_mode": "stretch",
            "scaling": "auto",
            "action": "run",
        },
        headers={"Referer": f"{base}/analyses/new/"},
        allow_redirects=False,
        timeout=30,
    )
    location = response.headers.get("Location", "")
    if response.status_code != 302 or not re.fullmatch(r"/analyses/[0-9a-f-]{36}/", location):
        raise SmokeFailure(f"submitting the analysis answered {response.status_code} {location!r}")
    return location


def wait_until_done(base: str, session: requests.Session, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + ANALYSIS_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = session.get(f"{base}{location}status.json", timeout=30).json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(1)
    raise SmokeFailure(f"the analysis did not finish within {ANALYSIS_TIMEOUT_SECONDS} s")


def check(base: str) -> None:
    session = log_in(base)
    location = run_analysis(base, session)
    status = wait_until_done(base, session, location)
    if status["status"] != "succeeded":
        raise SmokeFailure(f"the analysis ended {status['status']}: {status.get('error_message')}")
    page = session.get(f"{base}{location}", timeout=30)
    if (
        page.status_code != 200
        or "Inference" not in page.text
        or status["predicted_class"] == status["expected_class"]
    ):
        raise SmokeFailure("the result page of the mislabelled video shows no inference maps")
    print(
        f"smoke: analysis {location} succeeded: predicted {status['predicted_label']!r}, "
        f"expected {status['expected_label']!r}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    for signum, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    log_path = REPO / "test-artifacts" / "make-run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "run", f"PORT={args.port}"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    try:
        wait_for_login_page(base, process)
        print(f"smoke: `make run` served the login page after {time.monotonic() - started:.0f} s")
        check(base)
    except (SmokeFailure, requests.RequestException, KeyError, ValueError) as exc:
        print(
            f"smoke: FAILED: {exc}\n--- make run log (tail) ---\n{log_path.read_text(errors='replace')[-5000:]}"
        )
        return 1
    finally:
        stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
