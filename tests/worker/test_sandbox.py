"""The sandbox, resource limits and concurrency cap of engine children (analyses/sandbox.py).

Every attack runs through the platform's own launch code (`engine_client.run_child` for the
short-lived children, `runner.start_engine`/`take_engine`/`run_engine_job` for the warm analysis
engine), with a `python -c` / stand-in engine that TRIES each thing and reports what happened.
The same probe is also run with the sandbox off, where it must succeed: that proves the probe
would notice a leak, so the sandboxed assertions can fail.

Without a working bubblewrap these tests skip with a message, except in CI (CI=true), where
they fail.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SECRET_MARKER = "s3cret-" + uuid.uuid4().hex
DATABASE_MARKER = "postgres://leak:" + uuid.uuid4().hex + "@db/x"
FILE_MARKER = "private-bytes-" + uuid.uuid4().hex

# The attack child: tries each thing, reports {name: {"ok": bool, "value"/"error": ...}} as JSON.
PROBE = r"""
import glob, json, os, socket, sys
args = json.loads(sys.argv[1])
report = {}
def attempt(name, action):
    try:
        report[name] = {"ok": True, "value": action()}
    except Exception as exc:
        report[name] = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
def read(path):
    with open(path, "rb") as handle:
        return handle.read().decode("latin-1")
def every_environ():
    seen = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            seen.append(read(path))
        except OSError:
            pass
    return "\n".join(seen)
def connect():
    socket.create_connection(("127.0.0.1", args["port"]), timeout=3).close()
    return "connected"
def write_input():
    with open(args["input"], "r+b") as handle:
        handle.write(b"MODIFIED")
    return "written"
def write_output():
    with open(os.path.join(args["out"], "result.txt"), "w") as handle:
        handle.write("written by the child")
    return "written"
attempt("parent_environ", lambda: read("/proc/%d/environ" % args["parent_pid"]))
attempt("every_environ", every_environ)
attempt("database", lambda: read(args["database"]))
attempt("other_analysis", lambda: read(args["other_analysis"]))
attempt("other_media", lambda: read(args["other_media"]))
attempt("tcp", connect)
attempt("read_input", lambda: read(args["input"]))
attempt("write_input", write_input)
attempt("write_output", write_output)
attempt("uid", os.getuid)
print(json.dumps({"ok": True, "report": report}))
"""


# --------------------------------------------------------------------------- helpers
def _require_bwrap(settings: Any) -> None:
    from analyses.worker import sandbox

    settings.GRADCAM_SANDBOX = "bwrap"
    problem = sandbox.sandbox_problem()
    if problem is None:
        return
    message = f"the engine sandbox cannot run here ({problem}): install it with `apt-get install bubblewrap`"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=["bwrap", "off"])
def mode(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> str:
    """Each attack test runs sandboxed, and as a control with the sandbox off."""
    settings.VAR_DIR = tmp_path / "var"  # this test's own slots, not the machine's
    if request.param == "bwrap":
        _require_bwrap(settings)
    settings.GRADCAM_SANDBOX = request.param
    return request.param


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 (connections queue in its backlog; none is accepted)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def targets(media_root: Path, tmp_path: Path) -> dict[str, Any]:
    """What the child must not reach (the database, another analysis's results, another user's
    upload) and what it must (its input, its output folder)."""
    database = tmp_path / "var" / f"db-{uuid.uuid4().hex}.sqlite3"
    other_analysis = media_root / "analyses" / uuid.uuid4().hex / "attempt-1" / "manifest.json"
    other_media = media_root / "videos" / f"{uuid.uuid4().hex}.mp4"
    own_input = media_root / "videos" / f"{uuid.uuid4().hex}.mp4"
    for path, text in (
        (database, FILE_MARKER),
        (other_analysis, FILE_MARKER),
        (other_media, FILE_MARKER),
        (own_input, "own input bytes"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # World-readable, as a default umask leaves them: only the sandbox's view of the file
    # system may keep them from the child, not pytest's private 0700 temp folders.
    for folder in (media_root, tmp_path):
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    out = media_root / "previews" / uuid.uuid4().hex
    return {
        "database": str(database),
        "other_analysis": str(other_analysis),
        "other_media": str(other_media),
        "input": own_input,
        "out": out,
    }


# A platform process (Django set up from an environment holding the secrets, as in production)
# that runs PROBE through engine_client.run_child, exactly as the engine children are run.
LAUNCHER = r"""
import json, os, sys
from pathlib import Path
import django
django.setup()
from analyses.worker import engine_client, sandbox
args = json.loads(sys.argv[1])
files = sandbox.ChildFiles(inputs=[Path(args["input"])], output_dir=Path(args["out"]))
args.update(parent_pid=os.getpid(), input=files.inside(args["input"]), out=files.inside(args["out"]))
child = engine_client.run_child(argv=[sys.executable, "-c", args.pop("probe"), json.dumps(args)], files=files,
                                limits=sandbox.child_limits(), timeout_seconds=60, what="Probing")
print(json.dumps({"returncode": child.returncode, "stdout": child.stdout, "stderr": child.stderr}))
"""


def _probe(*, mode: str, targets: dict[str, Any], port: int, media_root: Path) -> dict[str, Any]:
    import subprocess

    environment = {
        **{
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PYTEST", "GRADCAM_", "DEBUG"))
        },
        "DJANGO_SETTINGS_MODULE": "gradcam_site.settings",
        "SECRET_KEY": SECRET_MARKER,
        "DATABASE_URL": f"sqlite:///{targets['database']}?leak={DATABASE_MARKER}",
        "GRADCAM_SANDBOX": mode,
        "DEBUG": "1" if mode == "off" else "0",
        "GRADCAM_VAR_DIR": str(Path(targets["database"]).parent),
        "MEDIA_ROOT": str(media_root),
    }
    arguments = {key: str(value) for key, value in targets.items()} | {"port": port, "probe": PROBE}
    completed = subprocess.run(
        [sys.executable, "-c", LAUNCHER, json.dumps(arguments)],
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    child = json.loads(completed.stdout.strip().splitlines()[-1])
    assert child["returncode"] == 0, child["stderr"][-3000:]
    return json.loads(child["stdout"].strip().splitlines()[-1])["report"]


def _run_python(code: str, *, limits: Any, files: Any = None, timeout: float = 60) -> Any:
    from analyses.worker import engine_client, sandbox

    return engine_client.run_child(
        argv=[sys.executable, "-c", code],
        files=files or sandbox.ChildFiles(),
        limits=limits,
        timeout_seconds=timeout,
        what="Testing",
    )


# --------------------------------------------------------------------------- isolation
def test_a_sandboxed_child_reads_its_input_and_writes_its_output_and_reaches_nothing_else(
    mode: str, settings: Any, targets: dict[str, Any], listener: int, media_root: Path
) -> None:
    report = _probe(mode=mode, targets=targets, port=listener, media_root=media_root)
    assert report["read_input"] == {"ok": True, "value": "own input bytes"}
    assert report["write_output"]["ok"], report["write_output"]
    assert (targets["out"] / "result.txt").read_text() == "written by the child"
    if mode == "off":
        # The control: the very same probe leaks everything without the sandbox.
        assert SECRET_MARKER in report["parent_environ"]["value"]
        assert DATABASE_MARKER in report["parent_environ"]["value"]
        assert report["database"]["ok"] and report["other_analysis"]["value"] == FILE_MARKER
        assert report["other_media"]["value"] == FILE_MARKER and report["tcp"]["ok"]
        assert report["write_input"]["ok"]
        return
    for name in ("parent_environ", "database", "other_analysis", "other_media", "tcp", "write_input"):
        assert not report[name]["ok"], (name, report[name])
    everything_seen = json.dumps(report)
    assert SECRET_MARKER not in everything_seen and DATABASE_MARKER not in everything_seen
    assert FILE_MARKER not in everything_seen
    assert targets["input"].read_text() == "own input bytes"
    if os.geteuid() == 0:
        assert report["uid"]["value"] == settings.GRADCAM_SANDBOX_UID != 0
        # Handed back to the platform once the child is dead.
        assert (targets["out"] / "result.txt").stat().st_uid == 0 and targets["out"].stat().st_uid == 0


def _stand_in_engine(tmp_path: Path, settings: Any) -> None:
    """A warm 'engine' that does what a compromised one would try, then writes its manifest."""
    script = tmp_path / "attacking-engine"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "print(json.dumps({'event': 'ready'}), flush=True)\n"
        "job = json.loads(sys.stdin.readline())\n"
        f"PROBE = {PROBE!r}\n"
        "arguments = dict(job['params'], input=job['model'], out=job['out'])\n"
        "import subprocess\n"
        "probe = subprocess.run([sys.executable, '-c', PROBE, json.dumps(arguments)], capture_output=True, text=True)\n"
        "report = json.loads(probe.stdout.strip().splitlines()[-1])['report']\n"
        "report['model_inode'] = os.stat(job['model']).st_ino\n"
        "report['video_bytes'] = open(job['video'], 'rb').read().decode('latin-1')\n"
        "report['job'] = job\n"
        "print(json.dumps({'event': 'report', 'report': report}), flush=True)\n"
        "with open(os.path.join(job['out'], 'manifest.json'), 'w') as handle:\n"
        "    json.dump({'schema': 1}, handle)\n"
        "print(json.dumps({'ok': True, 'manifest': os.path.join(job['out'], 'manifest.json')}), flush=True)\n"
    )
    script.chmod(0o755)
    settings.GRADCAM_ENGINE_PYTHON = str(script)


def _run_warm_engine_job(
    *, targets: dict[str, Any], port: int, model: Path, video: Path
) -> tuple[Any, dict, Path]:
    """Start a spare, let a job take it (renaming its folder), run the job; (outcome, report, work_dir)."""
    from analyses.worker import runner

    runner.start_spare()
    work_dir = runner.work_root() / f"{uuid.uuid4().hex}-1"
    engine = runner.take_engine(work_dir=work_dir, start_next_spare=False)
    events: list[dict[str, Any]] = []
    try:
        outcome = runner.run_engine_job(
            engine=engine,
            job={
                "model": str(model),
                "video": str(video),
                "out": str(engine.work_dir / "out"),
                "params": {
                    "parent_pid": os.getpid(),
                    "port": port,
                    "database": targets["database"],
                    "other_analysis": targets["other_analysis"],
                    "other_media": targets["other_media"],
                },
            },
            timeout_seconds=60,
            memory_limit_mb=4096,
            on_event=events.append,
            should_cancel=lambda: False,
        )
        assert list((work_dir / "in").iterdir()) == [], "the inputs stay linked after the job"
        assert (work_dir / "out").stat().st_uid == os.getuid()
    finally:
        runner.discard_engine(engine, remove_work_dir=False)
    reports = [event["report"] for event in events if event.get("event") == "report"]
    assert len(reports) == 1, (outcome, events, runner._stderr_tail(work_dir))
    return outcome, reports[0], work_dir


def test_the_warm_engine_sees_only_the_inputs_of_the_job_that_took_it(
    settings: Any, tmp_path: Path, targets: dict[str, Any], listener: int, media_root: Path
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    _require_bwrap(settings)
    _stand_in_engine(tmp_path, settings)
    model = media_root / "classifiers" / f"{uuid.uuid4().hex}.h5"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("model bytes")
    video: Path = targets["input"]
    outcome, report, work_dir = _run_warm_engine_job(targets=targets, port=listener, model=model, video=video)
    assert outcome.kind == "succeeded", outcome
    assert outcome.manifest_path == work_dir / "out" / "manifest.json" and outcome.manifest_path.is_file()
    assert report["job"]["model"] == "/job/in/model.h5" and report["job"]["out"] == "/job/out"
    assert report["read_input"]["value"] == "model bytes" and report["video_bytes"] == "own input bytes"
    assert report["model_inode"] == model.stat().st_ino  # a hard link, not a copy
    for name in ("parent_environ", "database", "other_analysis", "other_media", "tcp", "write_input"):
        assert not report[name]["ok"], (name, report[name])
    assert SECRET_MARKER not in json.dumps(report) and FILE_MARKER not in json.dumps(report)
    assert model.read_text() == "model bytes"


def test_the_warm_engine_gets_a_copy_of_an_input_its_user_may_not_read(
    settings: Any, tmp_path: Path, targets: dict[str, Any], listener: int, media_root: Path
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    _require_bwrap(settings)
    if os.geteuid() != 0:
        pytest.skip("only root runs the engine as another user")
    _stand_in_engine(tmp_path, settings)
    model = media_root / "classifiers" / f"{uuid.uuid4().hex}.keras"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("private model bytes")
    model.chmod(0o600)
    outcome, report, _ = _run_warm_engine_job(
        targets=targets, port=listener, model=model, video=targets["input"]
    )
    assert outcome.kind == "succeeded", outcome
    assert report["read_input"]["value"] == "private model bytes"
    assert report["model_inode"] != model.stat().st_ino
    assert not report["write_input"]["ok"] and model.read_text() == "private model bytes"
    assert (model.stat().st_mode & 0o777) == 0o600  # the stored original was not made readable


# --------------------------------------------------------------------------- limits
@pytest.mark.parametrize(
    ("code", "limit_args", "expected"),
    [
        (
            "b = bytearray(600 * 1024 * 1024); b[-1] = 1",
            {"memory_mb": 256},
            "it needed more memory than the limit of 256 MB",
        ),
        ("while True:\n    pass", {"cpu_seconds": 1}, "it used more than its CPU-time limit of 1 seconds"),
        (
            "import os\nopen(os.path.join(os.environ['TMPDIR'], 'big'), 'wb').write(b'x' * 3 * 1024 * 1024)",
            {"file_mb": 1},
            "it tried to write a file larger than the limit of 1 MB",
        ),
    ],
    ids=["memory", "cpu", "file-size"],
)
def test_a_child_past_its_limit_is_stopped_with_a_clear_message(
    mode: str, code: str, limit_args: dict[str, int], expected: str
) -> None:
    from analyses.worker import engine_client
    from analyses.worker.sandbox import ResourceLimits

    generous = {"memory_mb": 2048, "cpu_seconds": 60, "file_mb": 64}
    # The same child within generous limits succeeds (the CPU burner is stopped by its wall clock).
    if "while True" not in code:
        assert _run_python(code, limits=ResourceLimits(**generous)).returncode == 0
    started = time.monotonic()
    with pytest.raises(engine_client.EngineFailure) as failure:
        _run_python(code, limits=ResourceLimits(**{**generous, **limit_args}), timeout=30)
    assert failure.value.code == "limit"
    assert str(failure.value) == f"Testing was stopped: {expected}."
    assert time.monotonic() - started < 25


# --------------------------------------------------------------------------- the cap
SLEEPER = (
    "import json, time\nstarted = time.time()\ntime.sleep({seconds})\n"
    "print(json.dumps({{'ok': True, 'start': started, 'end': time.time()}}))"
)


def _run_concurrently(count: int, *, seconds: float) -> list[Any]:
    from analyses.worker.sandbox import child_limits

    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            results[index] = _run_python(SLEEPER.format(seconds=seconds), limits=child_limits())
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(60)
    return results


def test_n_plus_one_children_run_n_at_a_time(mode: str, settings: Any) -> None:
    settings.GRADCAM_CHILD_SLOTS = 2
    settings.GRADCAM_CHILD_SLOT_WAIT = 30
    results = _run_concurrently(3, seconds=1.5)
    spans = sorted(
        (report["start"], report["end"])
        for report in (json.loads(result.stdout.strip().splitlines()[-1]) for result in results)
    )
    most_at_once = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most_at_once == 2
    assert spans[2][0] >= min(spans[0][1], spans[1][1]) - 0.05  # the third waited for a slot


def test_a_child_that_finds_no_free_slot_in_time_fails_with_a_clear_sentence(
    mode: str, settings: Any
) -> None:
    from analyses.worker import engine_client
    from analyses.worker.sandbox import child_limits

    settings.GRADCAM_CHILD_SLOTS = 1
    settings.GRADCAM_CHILD_SLOT_WAIT = 0.5
    holder = threading.Thread(target=_run_concurrently, args=(1,), kwargs={"seconds": 3})
    holder.start()
    time.sleep(0.8)  # the holder's child is running
    started = time.monotonic()
    try:
        with pytest.raises(engine_client.EngineFailure) as failure:
            _run_python("print('{\"ok\": true}')", limits=child_limits())
    finally:
        holder.join(30)
    assert failure.value.code == "busy"
    assert str(failure.value) == (
        "Testing could not start: the server is busy processing other files (all 1 places stayed taken "
        "for 0.5 seconds). Try again in a few minutes."
    )
    assert 0.4 < time.monotonic() - started < 3
    assert _run_python("print('{\"ok\": true}')", limits=child_limits()).returncode == 0


# --------------------------------------------------------------------------- start-up
def test_start_up_check_names_the_setting_and_the_package_when_bwrap_is_missing(
    settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from django.core import checks

    settings.GRADCAM_SANDBOX = "bwrap"
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    errors = [
        message
        for message in checks.run_checks(tags=[checks.Tags.security], include_deployment_checks=True)
        if message.id == "analyses.E001"
    ]
    assert len(errors) == 1 and errors[0].level == checks.ERROR
    assert "GRADCAM_SANDBOX=bwrap" in errors[0].msg and "bwrap" in errors[0].msg
    assert "apt-get install bubblewrap" in errors[0].hint


def test_start_up_check_warns_when_the_sandbox_is_off_and_is_silent_when_it_works(settings: Any) -> None:
    from django.core import checks

    from analyses.worker.sandbox import check_sandbox

    settings.GRADCAM_SANDBOX = "off"
    [warning] = check_sandbox()
    assert warning.level == checks.WARNING and warning.id == "analyses.W001"
    assert "WITHOUT the sandbox" in warning.msg
    _require_bwrap(settings)
    assert check_sandbox() == []


def _settings_error(**environment: str) -> str:
    import subprocess

    base = {
        name: value for name, value in os.environ.items() if not name.startswith(("GRADCAM_SANDBOX", "DEBUG"))
    }
    completed = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "DJANGO_SETTINGS_MODULE": "gradcam_site.settings", **environment},
    )
    return completed.stderr if completed.returncode else ""


def test_the_sandbox_can_be_switched_off_only_in_debug_mode_and_bad_values_stop_start_up() -> None:
    assert "GRADCAM_SANDBOX=off" in _settings_error(GRADCAM_SANDBOX="off", DEBUG="0")
    assert "DEBUG=1" in _settings_error(GRADCAM_SANDBOX="off", DEBUG="0")
    assert _settings_error(GRADCAM_SANDBOX="off", DEBUG="1") == ""
    assert "is not one of: bwrap, off" in _settings_error(GRADCAM_SANDBOX="firejail")
    assert "is root" in _settings_error(GRADCAM_SANDBOX_USER="root")
    assert "no such user" in _settings_error(GRADCAM_SANDBOX_USER="no-such-user-here")


def _manage(*arguments: str, path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGUMENTS` in a fresh process with the default sandbox setting (bwrap), DEBUG=1,
    its own SQLite database and PATH set to `path`."""
    base = {name: value for name, value in os.environ.items() if not name.startswith("GRADCAM_SANDBOX")}
    environment = {
        **base,
        "DEBUG": "1",
        "PATH": path,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "GRADCAM_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )


def test_migrate_works_without_bubblewrap_and_make_demo_refuses_saying_why(tmp_path: Path) -> None:
    """Only what starts engine children needs the sandbox: a fresh set-up can migrate without it."""
    no_bwrap = str(tmp_path / "bin")  # an empty PATH folder: no bwrap, no ffmpeg
    (tmp_path / "bin").mkdir()
    migrated = _manage("migrate", "--noinput", path=no_bwrap, tmp_path=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "E001" not in migrated.stderr
    refused = _manage("make_demo", path=no_bwrap, tmp_path=tmp_path)
    assert refused.returncode == 1
    assert "GRADCAM_SANDBOX=bwrap" in refused.stderr and "apt-get install bubblewrap" in refused.stderr
    assert "Traceback" not in refused.stderr
    deploy = _manage("check", "--deploy", path=no_bwrap, tmp_path=tmp_path)
    assert deploy.returncode != 0 and "analyses.E001" in deploy.stderr


def test_the_analysis_engine_gets_the_gpu_device_nodes_when_the_machine_has_them(
    monkeypatch: Any, tmp_path: Path
) -> None:
    """A GPU worker's container has /dev/nvidia*; the sandbox's minimal /dev would hide them."""
    from analyses.worker import sandbox

    devices = tmp_path / "dev"
    devices.mkdir()
    (devices / "nvidia0").write_text("")  # a regular file is not a device: never bound
    monkeypatch.setattr(sandbox, "GPU_DEVICE_GLOB", str(devices / "nvidia*"))
    assert sandbox.gpu_device_binds() == []
    monkeypatch.setattr(sandbox, "GPU_DEVICE_GLOB", "/dev/nul*")  # a character device on every machine
    binds = sandbox.gpu_device_binds()
    assert binds == [sandbox.Bind(host=Path("/dev/null"), inside="/dev/null", device=True)]
    options = sandbox._mount_options(binds)
    assert options[options.index("--dev-bind") : options.index("--dev-bind") + 3] == [
        "--dev-bind",
        "/dev/null",
        "/dev/null",
    ]
    if sandbox.enabled():
        engine = sandbox.engine_binds(input_dir=tmp_path, output_dir=tmp_path)
        assert sandbox.Bind(host=Path("/dev/null"), inside="/dev/null", device=True) in engine
