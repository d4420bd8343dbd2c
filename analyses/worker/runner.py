"""Engine child processes for analyses: started with exec, watched, each used for ONE job.

The django-q2 worker process that runs an analysis (`analyses.runs.execution`) never imports
TensorFlow. It runs the engine as `<engine python> -m gradcam3d worker`, a fresh exec'ed
process that imports TensorFlow, prints `{"event": "ready"}`, reads one job line on stdin and
exits (docs/engine-contract.md).

Speed: importing TensorFlow costs 5-8 s, more than the demo analysis itself. Each worker
process therefore keeps ONE spare engine started ahead of time (already imported, not yet
given any user file); a job takes the spare and the next spare starts as soon as that job ends. An engine is
never reused for a second job, so nothing of one user's run (model objects, files, memory)
can reach another's.

Isolation of each engine child:
- exec'ed, never forked from a process that imported TensorFlow;
- its own process group (a timeout kills FFmpeg grandchildren too), killed while the engine is
  still unreaped (its pid, hence the group id, cannot have been reused), and the parent-death
  signal (bubblewrap's --die-with-parent, and the exec wrapper of `analyses.worker.sandbox`), so a
  SIGKILLed worker leaves no orphan engine behind;
- an environment without SECRET_KEY or database credentials (engine_client.child_environment);
- the sandbox of `analyses.worker.sandbox` (no network, own pid namespace and /tmp, another user when we
  are root), CPU-time and file-size limits. The spare waits in a scratch folder
  `spare-<hex>/` renamed to the analysis's folder when a job takes it; the sandbox shows it
  only that folder's `in/` (read-only, at /job/in) and `out/` (writable, at /job/out), bound by
  inode once mounted, so the rename changes nothing inside (a spare too young to be mounted is
  waited for). At job time the model and video are hard-linked
  (or, when the engine's user may not read them, copied) into `in/`, and the job line names
  them by their in-sandbox paths;
- a wall-clock timeout and a memory limit on the resident memory of its process tree (RLIMIT_AS
  is unusable: TensorFlow reserves far more virtual memory than it ever touches), checked
  even while the engine writes output without a pause;
- its working folder holds `owner.json` (the leases of the worker and the engine), so the
  reaper can remove the folders of dead workers and engines (`work_folders_sweep`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.conf import settings

from analyses.worker import sandbox
from analyses.worker.engine_client import child_environment
from analyses.worker.leases import process_lease, worker_lease_is_dead

logger = logging.getLogger(__name__)

WORK_FOLDER_NAME = ".work"
INPUT_FOLDER_NAME = "in"  # the job's inputs, read-only in the sandbox
OUTPUT_FOLDER_NAME = "out"  # the engine's output folder, the only one it may write
STDERR_FILE_NAME = "engine-stderr.log"
PID_FILE_NAME = "engine.pid"
OWNER_FILE_NAME = "owner.json"
WORK_FOLDER_GRACE_SECONDS = 300  # a working folder younger than this is never swept
_POLL_SECONDS = 0.1
_STDERR_TAIL_BYTES = 4000
_JOB_INPUTS = ("model", "video")

OutcomeKind = Literal["succeeded", "refused", "crashed", "timeout", "memory", "limit", "cancelled"]


@dataclass
class EngineOutcome:
    """How one engine job ended. `message` is a sentence fit to show a user (no traceback)."""

    kind: OutcomeKind
    message: str = ""
    manifest_path: Path | None = None
    refusal_code: str = ""
    exit_status: int | None = None
    peak_rss_mb: float = 0.0
    stderr_tail: str = ""


@dataclass
class EngineProcess:
    process: subprocess.Popen[str]
    work_dir: Path
    owner_pid: int
    started_monotonic: float
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    ready_monotonic: float | None = None
    sandboxed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_status_nowait(self) -> int | None:
        """The engine's exit status if it has exited, else None, WITHOUT reaping it.

        An unreaped (zombie) engine keeps its pid, so its process group id cannot be given to
        another process before `kill()` has killed the group.
        """
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # pragma: no cover - reaped behind our back
            return self.process.poll()
        if info is None or info.si_pid == 0:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def wait_exit_nowait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while (status := self.exit_status_nowait()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return status

    def is_alive(self) -> bool:
        return self.exit_status_nowait() is None

    def kill(self) -> None:
        """Kill the engine and everything it started (its own process group), then reap it."""
        if self.process.returncode is None:  # not reaped yet: the group id is still ours
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            logger.error("engine %s did not die after SIGKILL", self.process.pid)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def work_root() -> Path:
    """MEDIA_ROOT/analyses/.work: on the same file system as the results, so renames are atomic."""
    return Path(settings.MEDIA_ROOT) / "analyses" / WORK_FOLDER_NAME


def engine_argv(*, work_dir: Path, binds: list[sandbox.Bind]) -> list[str]:
    """The engine, sandboxed (seeing only `binds`: work_dir's in/ and out/) and limited; it dies
    with the worker process that started it (a SIGKILLed cluster leaves no orphan)."""
    argv = [str(settings.GRADCAM_ENGINE_PYTHON), "-m", "gradcam3d", "worker"]
    # Without the sandbox the engine keeps its working folder as cwd, as before.
    cwd = "/tmp" if sandbox.enabled() else str(work_dir)
    return sandbox.wrap(argv, binds=binds, cwd=cwd, limits=sandbox.engine_limits())


def _engine_environment() -> dict[str, str]:
    environment = child_environment()
    if sandbox.enabled():
        # The sandbox's own small tmpfs: the platform's HOME and TMPDIR do not exist in there.
        environment.update({"HOME": "/tmp", "TMPDIR": "/tmp"})
    return environment


def _read_lines(*, stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)  # end of output


def start_engine(*, work_dir: Path | None = None) -> EngineProcess:
    """Start a fresh engine process waiting for its job in `work_dir` (a new scratch folder by default)."""
    if work_dir is None:
        work_dir = work_root() / f"spare-{uuid.uuid4().hex}"
    work_dir.mkdir(parents=True, exist_ok=False)
    (work_dir / INPUT_FOLDER_NAME).mkdir()
    os.chmod(work_dir / INPUT_FOLDER_NAME, 0o755)  # whatever our umask: the engine's user lists it
    (work_dir / OUTPUT_FOLDER_NAME).mkdir()
    sandbox.give_to_child(work_dir / OUTPUT_FOLDER_NAME)
    binds = sandbox.engine_binds(
        input_dir=work_dir / INPUT_FOLDER_NAME, output_dir=work_dir / OUTPUT_FOLDER_NAME
    )
    try:
        argv = engine_argv(work_dir=work_dir, binds=binds)
        with open(work_dir / STDERR_FILE_NAME, "ab") as stderr_file:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                cwd=work_dir,
                env=_engine_environment(),
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                close_fds=True,
                start_new_session=True,
            )
    except sandbox.SandboxError as exc:
        raise OSError(str(exc)) from exc
    (work_dir / PID_FILE_NAME).write_text(str(process.pid))
    (work_dir / OWNER_FILE_NAME).write_text(
        json.dumps({"worker": process_lease(os.getpid()), "engine": process_lease(process.pid)})
    )
    engine = EngineProcess(
        process=process,
        work_dir=work_dir,
        owner_pid=os.getpid(),
        started_monotonic=time.monotonic(),
        sandboxed=sandbox.enabled(),
    )
    threading.Thread(
        target=_read_lines,
        kwargs={"stream": process.stdout, "lines": engine.lines},
        name=f"engine-{process.pid}-stdout",
        daemon=True,
    ).start()
    return engine


# This worker process's spare engine. A module global is right here: django-q2 worker
# processes are single-threaded task runners, and the spare holds no user data.
_spare: EngineProcess | None = None
_spare_lock = threading.Lock()


def start_spare() -> None:
    """Make sure this process has a spare engine importing TensorFlow (no-op if it has one)."""
    global _spare
    with _spare_lock:
        if _spare is not None and _spare.owner_pid == os.getpid() and _spare.is_alive():
            return
        if _spare is not None and _spare.owner_pid == os.getpid():
            discard_engine(_spare)
        try:
            _spare = start_engine()
        except OSError as exc:
            logger.error("could not start a spare analysis engine: %s", exc)
            _spare = None


def take_engine(*, work_dir: Path, start_next_spare: bool = True) -> EngineProcess:
    """Hand out this process's spare (renamed into `work_dir`), or a fresh engine if there is none.

    The caller owns the returned engine and must `discard_engine` it after its one job.
    """
    global _spare
    with _spare_lock:
        engine, _spare = _spare, None
    if engine is not None and (engine.owner_pid != os.getpid() or not engine.is_alive()):
        if engine.owner_pid == os.getpid():
            discard_engine(engine)
        engine = None
    if engine is None:
        engine = start_engine(work_dir=work_dir)
    else:
        work_dir.parent.mkdir(parents=True, exist_ok=True)
        _wait_until_mounted(engine)
        os.rename(engine.work_dir, work_dir)
        engine.work_dir = work_dir
    if start_next_spare:
        start_spare()
    return engine


def discard_engine(engine: EngineProcess, *, remove_work_dir: bool = True) -> None:
    engine.kill()
    if remove_work_dir:
        shutil.rmtree(engine.work_dir, ignore_errors=True)


@atexit.register
def _discard_spare_at_exit() -> None:
    global _spare
    if _spare is not None and _spare.owner_pid == os.getpid():
        discard_engine(_spare)
        _spare = None


def work_folders_sweep(*, older_than_seconds: float = WORK_FOLDER_GRACE_SECONDS) -> int:
    """Remove working folders (spare-* and <code hex>-<attempt>) left by dead workers and engines.

    A folder goes only when it is older than `older_than_seconds` and both the worker and the
    engine named in its owner file are certainly dead (same host, pid gone or reused); a folder
    without a readable owner file that old was left by a worker that died while creating it.
    Returns how many folders were removed.
    """
    root = work_root()
    try:
        folders = [path for path in root.iterdir() if path.is_dir() and not path.is_symlink()]
    except FileNotFoundError:
        return 0
    removed = 0
    now = time.time()
    for folder in folders:
        try:
            if now - folder.stat().st_mtime < older_than_seconds:
                continue
        except OSError:  # renamed (a spare taken) or removed meanwhile
            continue
        try:
            owner = json.loads((folder / OWNER_FILE_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            owner = None  # a worker died between creating the folder and starting its engine
        except (OSError, ValueError):
            continue
        if owner is None and not folder.exists():
            continue
        if owner is not None:
            leases = [owner.get("worker"), owner.get("engine")] if isinstance(owner, dict) else [None]
            if not all(isinstance(lease, str) and lease and worker_lease_is_dead(lease) for lease in leases):
                continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed += 1
            logger.warning("removed the working folder %s of a dead worker", folder.name)
    return removed


def _child_pids(pid: int) -> list[int]:
    pids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                pids.extend(int(child) for child in children.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return pids


def _wait_until_mounted(engine: EngineProcess, *, timeout_seconds: float = 10.0) -> None:
    """Before a young spare's folder is renamed: wait until bubblewrap has mounted it.

    bubblewrap binds a folder by its path (even one given as a descriptor, which it only checks),
    so a rename while it sets up makes it fail. Its pid-1 forks the command only once every mount
    is in place: a grandchild of the engine process means the folder may be renamed.
    """
    deadline = time.monotonic() + timeout_seconds
    while engine.sandboxed and time.monotonic() < deadline and engine.is_alive():
        if any(_child_pids(child) for child in _child_pids(engine.pid)):
            return
        time.sleep(0.01)


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (0 when it is gone)."""
    total_kb = 0
    pending = [pid]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
        pending.extend(_child_pids(current))
    return total_kb / 1024.0


def _stderr_tail(work_dir: Path) -> str:
    try:
        with open(work_dir / STDERR_FILE_NAME, "rb") as stderr_file:
            stderr_file.seek(0, os.SEEK_END)
            stderr_file.seek(max(0, stderr_file.tell() - _STDERR_TAIL_BYTES))
            return stderr_file.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass
class _Watch:
    """What watching an engine's job found: its result line, why it was stopped, its peak memory."""

    final: dict[str, Any] | None = None
    stopped: OutcomeKind | None = None
    peak_rss_mb: float = 0.0


def _limits_exceeded(
    watch: _Watch,
    engine: EngineProcess,
    *,
    deadline: float,
    memory_limit_mb: float,
    should_cancel: Callable[[], bool],
) -> bool:
    """Check the wall clock, the memory of the engine's process tree and a cancel request."""
    if time.monotonic() > deadline:
        watch.stopped = "timeout"
    elif (rss := process_tree_rss_mb(engine.pid)) > memory_limit_mb:
        watch.peak_rss_mb = max(watch.peak_rss_mb, rss)
        watch.stopped = "memory"
    elif should_cancel():
        watch.stopped = "cancelled"
    else:
        watch.peak_rss_mb = max(watch.peak_rss_mb, rss)
    return watch.stopped is not None


def _watch_job(
    engine: EngineProcess,
    *,
    deadline: float,
    memory_limit_mb: float,
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
) -> _Watch:
    """Read the engine's output until its result line, its end, or a limit stops it."""
    watch = _Watch()
    last_check = time.monotonic()
    while True:
        try:
            line: str | None = engine.lines.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            line = ""
        if line is None:
            return watch  # end of output
        if line:
            message = _parse_line(line)
            if message is not None:
                if "ok" in message:
                    # The result is complete (the manifest is written before this line): do not
                    # wait for the interpreter's slow TensorFlow teardown, the engine is killed later.
                    watch.final = message
                    return watch
                elif message.get("event") == "ready":
                    engine.ready_monotonic = time.monotonic()
                elif "event" in message:
                    on_event(message)
            if time.monotonic() - last_check < _POLL_SECONDS:
                continue  # more output may be waiting; the limits are checked at least this often
        last_check = time.monotonic()
        if _limits_exceeded(
            watch, engine, deadline=deadline, memory_limit_mb=memory_limit_mb, should_cancel=should_cancel
        ):
            return watch


def _kill_and_exit_status(engine: EngineProcess, watch: _Watch) -> int | None:
    """Kill the engine's process group and say how it ended.

    Never reap the engine before its group is killed (engine.kill): a reaped pid may be reused,
    and killpg would then hit an unrelated process group.
    """
    exit_status: int | None = None
    if watch.stopped is None and watch.final is None:
        # Output ended without a result line: the exit status tells why.
        exit_status = engine.wait_exit_nowait(timeout=10)
    elif watch.final is not None:
        # The result line's own claim (2 for a refusal, 0 for success) unless it already exited.
        exit_status = engine.exit_status_nowait()
        if exit_status is None:
            final = watch.final
            exit_status = 0 if final.get("ok") is True else (2 if final.get("code") != "internal" else 1)
    engine.kill()  # also kills FFmpeg grandchildren left behind, then reaps the engine
    return exit_status if exit_status is not None else engine.process.returncode


def run_engine_job(
    *,
    engine: EngineProcess,
    job: dict[str, Any],
    timeout_seconds: float,
    memory_limit_mb: float,
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
) -> EngineOutcome:
    """Give `engine` its one job and watch it until it ends; the engine is dead on return.

    `on_event` receives every progress/prediction JSON line; `should_cancel` is polled often
    (it throttles its own database reads). The wall-clock limit starts now, when the job is
    handed over (a spare still importing TensorFlow spends part of it).
    """
    deadline = time.monotonic() + timeout_seconds
    if (failed := _hand_over(engine, job)) is not None:
        return failed
    watch = _watch_job(
        engine,
        deadline=deadline,
        memory_limit_mb=memory_limit_mb,
        on_event=on_event,
        should_cancel=should_cancel,
    )
    exit_status = _kill_and_exit_status(engine, watch)
    outcome = _outcome_of_dead_engine(
        engine,
        final=watch.final,
        stopped=watch.stopped,
        exit_status=exit_status,
        timeout_seconds=timeout_seconds,
        memory_limit_mb=memory_limit_mb,
    )
    outcome.peak_rss_mb = watch.peak_rss_mb
    return outcome


def _hand_over(engine: EngineProcess, job: dict[str, Any]) -> EngineOutcome | None:
    """Write the job line (inputs staged for the sandbox first); an outcome if that already failed."""
    try:
        job = _job_for_engine(engine, job)
    except OSError as exc:
        logger.error("engine %s: could not stage the job's inputs: %s", engine.pid, exc)
        engine.kill()
        _clear_inputs(engine)
        return EngineOutcome(
            kind="crashed", message="The analysis could not give its input files to the engine."
        )
    try:
        assert engine.process.stdin is not None
        engine.process.stdin.write(json.dumps(job) + "\n")
        engine.process.stdin.flush()
        engine.process.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the engine already died: its exit status tells why
    return None


def _outcome_of_dead_engine(
    engine: EngineProcess,
    *,
    final: dict[str, Any] | None,
    stopped: OutcomeKind | None,
    exit_status: int | None,
    timeout_seconds: float,
    memory_limit_mb: float,
) -> EngineOutcome:
    """Classify how the (killed and reaped) engine ended; its inputs go, its output becomes ours."""
    exit_status = sandbox.decode_exit_status(exit_status, sandboxed=engine.sandboxed)
    _clear_inputs(engine)
    sandbox.take_back(engine.work_dir / OUTPUT_FOLDER_NAME)
    tail = _stderr_tail(engine.work_dir)
    outcome = _classify(
        final=final,
        stopped=stopped,
        exit_status=exit_status,
        timeout_seconds=timeout_seconds,
        memory_limit_mb=memory_limit_mb,
        limit=_limit_message(final=final, stopped=stopped, exit_status=exit_status, stderr_tail=tail),
    )
    if outcome.manifest_path is not None:
        outcome.manifest_path = _host_path(engine, outcome.manifest_path)
    outcome.stderr_tail = tail
    if outcome.kind == "crashed":
        logger.error("engine %s crashed (exit %s): %s", engine.pid, exit_status, tail)
    return outcome


def _job_for_engine(engine: EngineProcess, job: dict[str, Any]) -> dict[str, Any]:
    """The job line as the sandboxed engine must see it: the model and video put into its
    read-only `in/` folder and every path translated to the sandbox's. Unchanged without sandbox."""
    if not engine.sandboxed:
        return job
    translated = dict(job)
    for key in _JOB_INPUTS:
        if isinstance(job.get(key), str):
            source = Path(job[key])
            name = f"{key}{sandbox.safe_suffix(source)}"
            sandbox.stage_input(source, folder=engine.work_dir / INPUT_FOLDER_NAME, name=name)
            translated[key] = f"{sandbox.IN_DIR}/{name}"
    if isinstance(job.get("out"), str):
        out = Path(os.path.abspath(job["out"]))
        host_out = engine.work_dir / OUTPUT_FOLDER_NAME
        if out == host_out or host_out in out.parents:
            translated["out"] = sandbox.OUT_DIR + str(out)[len(str(host_out)) :]
    return translated


def _host_path(engine: EngineProcess, path: Path) -> Path:
    """A path the engine printed, on the host (paths outside its output folder stay as printed)."""
    text = str(path)
    if engine.sandboxed and (text == sandbox.OUT_DIR or text.startswith(sandbox.OUT_DIR + "/")):
        return Path(str(engine.work_dir / OUTPUT_FOLDER_NAME) + text[len(sandbox.OUT_DIR) :])
    return path


def _clear_inputs(engine: EngineProcess) -> None:
    """Drop the links to the job's inputs as soon as the engine is dead."""
    input_dir = engine.work_dir / INPUT_FOLDER_NAME
    for entry in input_dir.iterdir() if input_dir.is_dir() else []:
        try:
            entry.unlink()
        except OSError as exc:
            logger.warning("could not remove the engine input %s: %s", entry, exc)


def _limit_message(
    *, final: dict[str, Any] | None, stopped: OutcomeKind | None, exit_status: int | None, stderr_tail: str
) -> str | None:
    if stopped is not None or exit_status == 0:
        return None
    text = f"{(final or {}).get('error') or ''}\n{stderr_tail}"
    return sandbox.limit_message(exit_status=exit_status, text=text, limits=sandbox.engine_limits())


def _parse_line(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _one_line(text: str, *, limit: int = 300) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _classify(
    *,
    final: dict[str, Any] | None,
    stopped: OutcomeKind | None,
    exit_status: int | None,
    timeout_seconds: float,
    memory_limit_mb: float,
    limit: str | None = None,
) -> EngineOutcome:
    # A stop the runner decided comes first; then a sandbox limit the engine ran into, unless
    # the job succeeded all the same.
    outcome = _stopped_outcome(
        stopped=stopped,
        exit_status=exit_status,
        timeout_seconds=timeout_seconds,
        memory_limit_mb=memory_limit_mb,
    )
    if outcome is not None:
        return outcome
    succeeded = final is not None and final.get("ok") is True and exit_status == 0
    if limit is not None and not succeeded:
        return EngineOutcome(
            kind="limit", exit_status=exit_status, message=f"The analysis was stopped: {limit}."
        )
    if final is not None and succeeded:
        manifest = final.get("manifest")
        return EngineOutcome(
            kind="succeeded",
            exit_status=exit_status,
            manifest_path=Path(str(manifest)) if manifest else None,
        )
    if exit_status == 2 and final is not None and final.get("ok") is False:
        return EngineOutcome(
            kind="refused",
            exit_status=exit_status,
            message=_one_line(str(final.get("error") or "The input was refused.")),
            refusal_code=str(final.get("code") or "refused"),
        )
    return _crashed_outcome(final=final, exit_status=exit_status)


def _stopped_outcome(
    *, stopped: OutcomeKind | None, exit_status: int | None, timeout_seconds: float, memory_limit_mb: float
) -> EngineOutcome | None:
    """The outcome of a job the runner stopped (timeout, memory, cancel), else None."""
    if stopped == "timeout":
        return EngineOutcome(
            kind="timeout",
            exit_status=exit_status,
            message=f"The analysis took longer than the limit of {timeout_seconds:g} seconds and was stopped.",
        )
    if stopped == "memory":
        return EngineOutcome(
            kind="memory",
            exit_status=exit_status,
            message=(
                f"The analysis needed more than the memory limit of {memory_limit_mb:g} MB and was "
                "stopped. Try fewer layers or a smaller model input."
            ),
        )
    if stopped == "cancelled":
        return EngineOutcome(kind="cancelled", exit_status=exit_status, message="Cancelled by the user.")
    return None


def _crashed_outcome(*, final: dict[str, Any] | None, exit_status: int | None) -> EngineOutcome:
    """A job that neither succeeded nor was refused nor stopped: killed by a signal, or failed."""
    if exit_status is not None and exit_status < 0:
        reason = f"was killed by {_signal_name(-exit_status)}"
        if -exit_status == signal.SIGKILL:
            reason += " (the system may have run out of memory)"
        return EngineOutcome(
            kind="crashed",
            exit_status=exit_status,
            message=f"The analysis engine {reason} and the analysis was stopped.",
        )
    detail = ""
    if final is not None and final.get("ok") is False and final.get("error"):
        detail = f": {_one_line(str(final['error']), limit=200)}"
    return EngineOutcome(
        kind="crashed",
        exit_status=exit_status,
        message=f"The analysis engine stopped with an internal error (exit status {exit_status}){detail}.",
    )
