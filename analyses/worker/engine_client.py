"""Talking to the engine (`python -m gradcam3d ...`) from the web app, in child processes.

Uploaded models and videos are untrusted: they are parsed only by a short-lived child process
with a wall-clock timeout that kills its whole process group, an environment that carries no
secrets (no SECRET_KEY, no DATABASE_URL), and a throw-away working directory, in the sandbox of
`analyses.worker.sandbox` (no network, read access to its own inputs only, write access to its own
output folder only, another user when we are root) with memory, CPU-time and file-size limits,
and only as many at once on the machine as GRADCAM_CHILD_SLOTS allows. The web app never
imports `gradcam3d` or TensorFlow; it reads the JSON object on the child's last stdout line
(see docs/engine-contract.md). Paths in arguments and results are the child's own
(`ChildFiles.inside`), mapped back to host paths here.

Exit status 2 with an `{"ok": false, "error": ...}` line is a refusal the user can act on ->
`EngineRefusal(message)`; anything else (crash, timeout, unreadable output, exit 2 without that
line, e.g. an argparse usage error) -> `EngineFailure` with a message fit to show a user, the
technical details going to the log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from analyses.worker import sandbox
from analyses.worker.sandbox import ChildFiles, ResourceLimits

logger = logging.getLogger(__name__)

EXIT_REFUSED = 2
# Variables a child may see: enough to find executables, a home and temp dir, the locale, and
# the engine's own knobs. Everything else (SECRET_KEY, DATABASE_URL, REDIS_URL, cloud
# credentials...) stays in the web process.
_PASSED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
_PASSED_PREFIXES = ("GRADCAM_", "TF_")
_MAX_STDERR_IN_LOG = 4000


class EngineError(Exception):
    """Base class: `str(exc)` is a complete sentence that can be shown to the user."""

    def __init__(self, message: str, *, code: str = "", details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


class EngineRefusal(EngineError):
    """The engine refused the input (exit status 2) and said why."""


class EngineFailure(EngineError):
    """The engine crashed, timed out or printed nothing we understand."""


def child_environment() -> dict[str, str]:
    """The environment of an engine child: an allowlist, never a copy of ours."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name in _PASSED_VARIABLES or name.startswith(_PASSED_PREFIXES)
    }
    environment.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    environment.setdefault("LANG", "C.UTF-8")
    # Quiet TensorFlow's start-up chatter on stderr for the commands that import it.
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment["PYTHONPATH"] = str(Path(settings.BASE_DIR))
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    return environment


def _kill_process_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_json_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None
    stdout: str
    stderr: str


def run_child(
    *,
    argv: Sequence[str],
    files: ChildFiles,
    limits: ResourceLimits,
    timeout_seconds: float,
    what: str,
) -> ChildResult:
    """Run `argv` as an engine child: in a slot, sandboxed and limited, seeing only `files`.

    Raises EngineFailure when it cannot start, waits too long for a slot, outlives
    `timeout_seconds` or is stopped by one of `limits`; any other ending is returned.
    """
    try:
        with sandbox.child_slot(), files:
            environment = {**child_environment(), **files.environment()}
            argv = sandbox.wrap(argv, binds=files.binds(), cwd=str(files.working_dir), limits=limits)
            returncode, stdout, stderr = _communicate(
                argv=argv,
                cwd=files.working_dir,
                environment=environment,
                timeout_seconds=timeout_seconds,
                what=what,
            )
    except sandbox.SlotsBusy:
        raise EngineFailure(
            f"{what} could not start: the server is busy processing other files (all "
            f"{settings.GRADCAM_CHILD_SLOTS} places stayed taken for {settings.GRADCAM_CHILD_SLOT_WAIT:g} seconds). "
            "Try again in a few minutes.",
            code="busy",
        ) from None
    except sandbox.SandboxError as exc:
        logger.error("engine sandbox: %s", exc)
        raise EngineFailure(
            f"{what} failed: the analysis engine could not be started.", code="not_started"
        ) from exc
    returncode = sandbox.decode_exit_status(returncode, sandboxed=files.sandboxed)
    if returncode != 0:
        limit = sandbox.limit_message(
            exit_status=returncode, text=stdout[-_MAX_STDERR_IN_LOG:] + stderr, limits=limits
        )
        if limit is not None:
            logger.warning(
                "engine child stopped by a limit (exit %s): %s", returncode, stderr[-_MAX_STDERR_IN_LOG:]
            )
            raise EngineFailure(
                f"{what} was stopped: {limit}.", code="limit", details=stderr[-_MAX_STDERR_IN_LOG:]
            )
    return ChildResult(returncode=returncode, stdout=stdout, stderr=stderr)


def _communicate(
    *, argv: Sequence[str], cwd: Path | None, environment: dict[str, str], timeout_seconds: float, what: str
) -> tuple[int | None, str, str]:
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=environment,
            start_new_session=True,  # own process group, so a timeout kills FFmpeg (or the sandbox) too
        )
    except OSError as exc:
        logger.error("could not start the engine %s: %s", argv[0], exc)
        raise EngineFailure(
            f"{what} failed: the analysis engine could not be started.", code="not_started"
        ) from exc
    try:
        stdout_bytes, stderr_bytes = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill_process_group(process)
        process.communicate()
        raise EngineFailure(
            f"{what} took longer than {timeout_seconds:g} seconds and was stopped.", code="timeout"
        ) from None
    except BaseException:
        _kill_process_group(process)
        process.communicate()
        raise
    # A child that exits leaves its own children (FFmpeg) behind only on a bug; clean up.
    _kill_process_group(process)
    return (
        process.returncode,
        stdout_bytes.decode("utf-8", "replace"),
        stderr_bytes.decode("utf-8", "replace"),
    )


def run_engine(
    *,
    command: str | None,
    arguments: Sequence[str],
    timeout_seconds: float,
    what: str,
    files: ChildFiles | None = None,
    limits: ResourceLimits | None = None,
    module: str = "gradcam3d",
) -> dict[str, Any]:
    """Run `<engine python> -m MODULE [COMMAND] ARGUMENTS...` and return its result object.

    MODULE is the engine (`gradcam3d`, with a sub-command) or the demo builder (`demo`, none).

    `what` names the job in user-facing failure messages ("Inspecting the model"). The child
    sees only `files` (nothing of ours by default); paths in `arguments` must be `files.inside(...)`.
    """
    argv = [
        str(settings.GRADCAM_ENGINE_PYTHON),
        "-m",
        module,
        *([command] if command else []),
        *map(str, arguments),
    ]
    child = run_child(
        argv=argv,
        files=files if files is not None else ChildFiles(),
        limits=limits if limits is not None else sandbox.child_limits(),
        timeout_seconds=timeout_seconds,
        what=what,
    )
    result = _last_json_line(child.stdout)
    if child.returncode == EXIT_REFUSED and result is not None and result.get("ok") is False:
        message = str(result.get("error") or "The file was refused.").strip()
        raise EngineRefusal(message, code=str(result.get("code") or "refused"))
    # Exit status 2 without a refusal object is not a refusal: argparse exits 2 on a usage
    # error, for instance. That is our bug, not the user's file, so it falls through to
    # EngineFailure below (stderr goes to the log, never to the page).
    if child.returncode != 0 or result is None or result.get("ok") is not True:
        logger.error(
            "engine command %s failed (exit %s): %s",
            command,
            child.returncode,
            child.stderr[-_MAX_STDERR_IN_LOG:],
        )
        if child.returncode is not None and child.returncode < 0:
            reason = f"the engine was killed by signal {-child.returncode}"
        else:
            reason = "the engine reported an internal error"
        raise EngineFailure(
            f"{what} failed: {reason}.", code="internal", details=child.stderr[-_MAX_STDERR_IN_LOG:]
        )
    return {key: value for key, value in result.items() if key != "ok"}


def _absolute(path: str | os.PathLike[str]) -> str:
    # The child runs in a temp working directory, so relative paths would point elsewhere.
    return os.path.abspath(os.fspath(path))


def child_timeouts(*, parent_seconds: float, short_steps: int, long_steps: int) -> tuple[float, float]:
    """`(--timeout, --processing-timeout)` for a video child that runs `short_steps` FFmpeg
    steps bounded by --timeout (probe, poster) and `long_steps` bounded by
    --processing-timeout (transcode, decode), one after the other.

    Their worst-case sum stays a little below `parent_seconds`, the wall clock after which
    run_engine SIGKILLs the child: the child's own limit must fire first, so it refuses with
    a clear message and removes its partial files instead of being killed mid-write.
    """
    margin = min(30.0, max(parent_seconds * 0.05, min(2.0, parent_seconds * 0.5)))
    budget = parent_seconds - margin
    short = min(float(settings.GRADCAM_PROBE_TIMEOUT), budget / max(1, short_steps + long_steps))
    long = (budget - short_steps * short) / long_steps if long_steps else short
    return short, long


def _timeout_arguments(*, parent_seconds: float, short_steps: int, long_steps: int) -> list[str]:
    short, long = child_timeouts(
        parent_seconds=parent_seconds, short_steps=short_steps, long_steps=long_steps
    )
    return ["--timeout", f"{short:.3f}", "--processing-timeout", f"{long:.3f}"]


def video_limits() -> dict[str, int | float]:
    """The limits every engine child applies to an untrusted video, in the engine's own names
    (job parameters, preview options; `--max-bytes` and so on on its command line)."""
    return {
        "max_bytes": settings.GRADCAM_MAX_VIDEO_BYTES,
        "max_seconds": settings.GRADCAM_MAX_VIDEO_SECONDS,
        "max_pixels": settings.GRADCAM_MAX_VIDEO_PIXELS,
        "max_frames": settings.GRADCAM_MAX_VIDEO_FRAMES,
    }


def _video_limit_arguments(*, parent_seconds: float, short_steps: int, long_steps: int) -> list[str]:
    limits = [
        argument
        for name, value in video_limits().items()
        for argument in (f"--{name.replace('_', '-')}", str(value))
    ]
    return [
        *limits,
        *_timeout_arguments(parent_seconds=parent_seconds, short_steps=short_steps, long_steps=long_steps),
    ]


def inspect_model_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model's config (no code is deserialized): format, input_shape, conv3d_layers..."""
    files = ChildFiles(inputs=[Path(path)])
    return run_engine(
        command="inspect",
        arguments=[files.inside(path), "--max-bytes", str(settings.GRADCAM_MAX_MODEL_BYTES)],
        timeout_seconds=settings.GRADCAM_INSPECT_TIMEOUT,
        what="Inspecting the model",
        files=files,
    )


def probe_video_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Container, codec, size, fps, duration and real frame count of a video, within limits."""
    files = ChildFiles(inputs=[Path(path)])
    return run_engine(
        command="probe",
        arguments=[
            files.inside(path),
            # probe: one --timeout step
            *_video_limit_arguments(
                parent_seconds=settings.GRADCAM_PROBE_TIMEOUT, short_steps=1, long_steps=0
            ),
        ],
        timeout_seconds=settings.GRADCAM_PROBE_TIMEOUT,
        what="Reading the video",
        files=files,
    )


def transcode_video_file(
    path: str | os.PathLike[str],
    out_mp4: str | os.PathLike[str],
    poster_jpg: str | os.PathLike[str],
    *,
    max_height: int = 720,
) -> dict[str, Any]:
    """Probe fields plus a browser-playable H.264 MP4 rendition and a poster JPEG.

    The child writes into a private folder next to `out_mp4` (the only folder it may write);
    its two files are renamed into place afterwards, only if they are regular files.
    """
    targets = {"rendition": Path(_absolute(out_mp4)), "poster": Path(_absolute(poster_jpg))}
    targets["rendition"].parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".transcode-", dir=targets["rendition"].parent))
    try:
        files = ChildFiles(inputs=[Path(path)], output_dir=scratch)
        produced = {
            "rendition": scratch / f"rendition{targets['rendition'].suffix}",
            "poster": scratch / f"poster{targets['poster'].suffix}",
        }
        result = run_engine(
            command="transcode",
            arguments=[
                files.inside(path),
                "--out",
                files.inside(produced["rendition"]),
                "--poster",
                files.inside(produced["poster"]),
                # probe + poster (+ its one retry) under --timeout, the H.264 encode under
                # --processing-timeout (gradcam3d.video.transcode_for_browser)
                *_video_limit_arguments(
                    parent_seconds=settings.GRADCAM_TRANSCODE_TIMEOUT, short_steps=3, long_steps=1
                ),
                "--max-height",
                str(max_height),
            ],
            timeout_seconds=settings.GRADCAM_TRANSCODE_TIMEOUT,
            what="Converting the video for the browser",
            files=files,
        )
        for key, source in produced.items():
            if _is_regular_file(source):
                shutil.move(source, targets[key])
                result[key] = str(targets[key])
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _paths_to_host(result: dict[str, Any], *, files: ChildFiles, keys: Sequence[str]) -> dict[str, Any]:
    """The child reports its own paths: give the caller the host's."""
    for key in keys:
        if isinstance(result.get(key), str):
            result[key] = str(files.host(result[key]))
    return result


def _option_arguments(params: Mapping[str, Any]) -> list[str]:
    """`{"frame_stride": 2, "mean": [0.4, 0.5], "x": True}` -> `--frame-stride 2 --mean 0.4,0.5 --x`."""
    arguments: list[str] = []
    for key, value in params.items():
        if value is None or value is False:
            continue
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            arguments.append(flag)
        elif isinstance(value, (list, tuple)):
            arguments.extend([flag, ",".join(map(str, value))])
        else:
            arguments.extend([flag, str(value)])
    return arguments


def preview_clip(
    video_path: str | os.PathLike[str],
    input_shape: Sequence[int],
    params: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """The T frames the model would see, as an MP4, with their source indices and times.

    `out_dir` is this preview's own folder: the child may write there and nowhere else.
    """
    files = ChildFiles(inputs=[Path(video_path)], output_dir=Path(out_dir))
    result = run_engine(
        command="preview",
        arguments=[
            files.inside(video_path),
            "--input-shape",
            ",".join(str(int(size)) for size in input_shape),
            "--out",
            files.inside(out_dir),
            *_option_arguments(params),
            # probe under --timeout; the decode (and its one retry) under --processing-timeout
            *_timeout_arguments(
                parent_seconds=settings.GRADCAM_TRANSCODE_TIMEOUT, short_steps=1, long_steps=2
            ),
        ],
        timeout_seconds=settings.GRADCAM_TRANSCODE_TIMEOUT,
        what="Preparing the preview",
        files=files,
    )
    return _paths_to_host(result, files=files, keys=["clip"])


def make_demo(
    *, out_dir: str | os.PathLike[str], seed: int = 0, force: bool = False, timeout_seconds: float = 1800.0
) -> dict[str, Any]:
    """Train the demo model and write sample videos (minutes, not seconds; reused when present).

    It reads no user file, but runs like every engine child (sandboxed, writing only `out_dir`,
    TensorFlow's limits): one way to start the engine, and no network for it either.
    """
    files = ChildFiles(output_dir=Path(out_dir))
    result = run_engine(
        module="demo",
        command=None,
        arguments=["--out", files.inside(out_dir), "--seed", str(seed), *(["--force"] if force else [])],
        timeout_seconds=timeout_seconds,
        what="Building the demo",
        files=files,
        limits=sandbox.engine_limits(),
    )
    for video in result.get("videos") or []:
        if isinstance(video, dict):
            _paths_to_host(video, files=files, keys=["path"])
    return _paths_to_host(result, files=files, keys=["model", "classmap", "demo_json"])


def difference_maps(
    *,
    a_npz: str | os.PathLike[str],
    a_key: str,
    b_npz: str | os.PathLike[str],
    b_key: str,
    out_dir: str | os.PathLike[str],
    label_a: str,
    label_b: str,
    timeout_seconds: float,
) -> dict[str, Any]:
    """The signed difference of two maps (`python -m gradcam3d difference`) as images in
    `out_dir`, the only folder the child may write. The `.npz` files were written by engine
    children that ran untrusted models: only this sandboxed child parses them."""
    files = ChildFiles(inputs=[Path(a_npz), Path(b_npz)], output_dir=Path(out_dir))
    return run_engine(
        command="difference",
        arguments=[
            files.inside(a_npz),
            a_key,
            files.inside(b_npz),
            b_key,
            "--out",
            files.inside(out_dir),
            f"--label-a={label_a}",  # "=": a label starting with "-" stays a value
            f"--label-b={label_b}",
        ],
        timeout_seconds=timeout_seconds,
        what="Computing the difference of the maps",
        files=files,
    )


COMPARE_MAPS_TIMEOUT_SECONDS = 120.0
COMPARE_MAPS_MAX_BYTES = 512 * 1024 * 1024


def compare_raw_maps(reference: str | os.PathLike[str], other: str | os.PathLike[str]) -> dict[str, Any]:
    """Compare two `raw_maps.npz` files array by array (`python -m gradcam3d compare-maps`).

    Both were written by an engine child that ran an untrusted model: they are read only in this
    sandboxed child (no pickles, sizes bounded). Returns its result: "arrays" {name: {"same_shape",
    "max_abs_diff", "relative_diff", ...}}, "only_in_a", "only_in_b", "identical", "max_relative_diff".
    """
    files = ChildFiles(inputs=[Path(reference), Path(other)])
    return run_engine(
        command="compare-maps",
        arguments=[
            files.inside(reference),
            files.inside(other),
            "--max-bytes",
            str(COMPARE_MAPS_MAX_BYTES),
        ],
        timeout_seconds=COMPARE_MAPS_TIMEOUT_SECONDS,
        what="Comparing the maps",
        files=files,
    )
