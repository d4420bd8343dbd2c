"""Submit -> succeeded latency of the demo analysis through a real worker cluster, vs the engine's own time.

Run: `.venv/bin/python bench/latency.py [--runs 3]`. Everything lives in a temporary folder (a
SQLite file database and MEDIA_ROOT); the demo model/videos come from var/demo (what `make run` builds)
(built by `python -m demo` when missing).

For each measured run it prints the wall time from `analysis_create` to the row reading
`succeeded`, the engine's own total (manifest timings.total, which excludes the TensorFlow
import) and the difference; the target is a difference of at most 1 s. For comparison it also
times a cold `python -m gradcam3d analyze` (a fresh process paying the TensorFlow import) in
the same run. A warm-up analysis runs first; between runs the bench waits for the worker's new
spare engine to finish importing TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / "var" / "demo"
SPARE_SETTLE_SECONDS = 15.0  # a spare's TensorFlow import takes 5-8 s on this machine


def engine_cli(*arguments: str, module: str = "gradcam3d") -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    if completed.returncode != 0:
        raise SystemExit(f"{module} {arguments[0]} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    engine_cli("--out", str(DEMO_DIR), module="demo")
    demo = json.loads((DEMO_DIR / "demo.json").read_text())
    inspection = engine_cli("inspect", str(DEMO_DIR / demo["model"]))
    video_entry = next(v for v in demo["videos"] if v["labelled_class"] != v["true_class"])

    scratch = Path(tempfile.mkdtemp(prefix="gradcam-latency-"))
    media_root = scratch / "media"
    environment = {
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "MEDIA_ROOT": str(media_root),
        "GRADCAM_ALLOW_DEV_SECRET": "1",
        "GRADCAM_WORKERS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    os.environ.update(environment)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gradcam_site.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from analyses.models import Analysis, Classifier, Video
    from analyses.runs.services import analysis_create

    class _NoMigrations(dict):
        # A throw-away database: create every table straight from the models (as the test
        # suite's --nomigrations does), whether or not migrations exist yet.
        def __contains__(self, item: object) -> bool:
            return True

        def __getitem__(self, item: str) -> None:
            return None

    from django.conf import settings

    settings.MIGRATION_MODULES = _NoMigrations()
    call_command("migrate", run_syncdb=True, verbosity=0)
    user = get_user_model().objects.create_user(username="bench", password="bench-password-123")

    def copy_in(source: Path, folder: str) -> str:
        relative = f"{folder}/{uuid.uuid4().hex}{source.suffix}"
        (media_root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, media_root / relative)
        return relative

    model_path = DEMO_DIR / demo["model"]
    video_path = DEMO_DIR / video_entry["path"]
    classifier = Classifier.objects.create(
        owner=user,
        name="demo",
        file=copy_in(model_path, "classifiers"),
        original_filename=model_path.name,
        file_format=inspection["format"],
        sha256=uuid.uuid4().hex,
        size_bytes=model_path.stat().st_size,
        input_shape=inspection["input_shape"],
        num_classes=inspection["num_classes"],
        conv3d_layers=inspection["conv3d_layers"],
        class_labels=demo["class_names"],
        inspection=inspection,
    )
    video = Video.objects.create(
        owner=user,
        name="clip",
        file=copy_in(video_path, "videos"),
        original_filename=video_path.name,
        sha256=uuid.uuid4().hex,
        size_bytes=video_path.stat().st_size,
    )

    cluster = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "qcluster"],
        cwd=REPO,
        env={**os.environ, **environment},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def one_run() -> tuple[float, float]:
        started = time.perf_counter()
        analysis = analysis_create(
            user=user,
            classifier=classifier,
            video=video,
            expected_class=video_entry["labelled_class"],
            params={},
        )
        while True:
            status = Analysis.objects.filter(pk=analysis.pk).values_list("status", flat=True).get()
            if status in ("succeeded", "failed", "cancelled"):
                break
            if cluster.poll() is not None:
                raise SystemExit("the worker cluster died")
            time.sleep(0.02)
        latency = time.perf_counter() - started
        analysis.refresh_from_db()
        if status != "succeeded":
            raise SystemExit(f"analysis {status}: {analysis.error_message}")
        return latency, float(analysis.timings["total"])

    try:
        warm_latency, warm_engine = one_run()  # the first spare may still be importing
        print(
            f"warm-up (first analysis of a fresh cluster): {warm_latency:.2f} s, engine {warm_engine:.2f} s"
        )
        results = []
        for run in range(args.runs):
            time.sleep(SPARE_SETTLE_SECONDS)
            latency, engine_seconds = one_run()
            results.append((latency, engine_seconds))
            print(
                f"run {run + 1}: submit->succeeded {latency:.2f} s, engine total {engine_seconds:.2f} s, "
                f"overhead {latency - engine_seconds:+.2f} s"
            )
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)

    cold_out = scratch / "cold"
    started = time.perf_counter()
    engine_cli(
        "analyze",
        str(model_path),
        str(video_path),
        "--out",
        str(cold_out),
        "--expected-class",
        str(video_entry["labelled_class"]),
    )
    cold_seconds = time.perf_counter() - started
    cold_engine = json.loads((cold_out / "manifest.json").read_text())["timings"]["total"]
    shutil.rmtree(scratch, ignore_errors=True)

    latency = statistics.median(r[0] for r in results)
    engine_seconds = statistics.median(r[1] for r in results)
    print(
        f"median submit->succeeded {latency:.2f} s vs engine {engine_seconds:.2f} s: "
        f"overhead {latency - engine_seconds:+.2f} s (target <= +1.00 s)"
    )
    print(
        f"cold `gradcam3d analyze` process in the same run: {cold_seconds:.2f} s "
        f"(engine {cold_engine:.2f} s, so {cold_seconds - cold_engine:.2f} s of start-up and TensorFlow import)"
    )
    print(f"warm spare vs cold process: {cold_seconds / latency:.2f}x faster")


if __name__ == "__main__":
    main()
