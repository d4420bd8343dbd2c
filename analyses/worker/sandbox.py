"""Launching engine children: a bubblewrap sandbox, resource limits and a machine-wide cap.

Every child that parses an uploaded file (`gradcam3d inspect|probe|transcode|preview`, the
analysis engine and its FFmpeg grandchildren; the demo builder `python -m demo` too, for uniformity) is started through
`wrap()`. With GRADCAM_SANDBOX=bwrap the child runs in a bubblewrap sandbox:

- no network (`--unshare-net`), its own pid namespace and /proc (it cannot see the platform's
  processes, hence not `/proc/<parent>/environ`), own IPC/UTS/cgroup namespaces, a new session,
  `--die-with-parent`, a small private tmpfs on /tmp, and a minimal /dev;
- a file system made only of read-only binds of what it needs to run: /usr (and the merged-/usr
  symlinks), a few files of /etc (dynamic linker cache, passwd/group, time zone), the Python
  prefixes of the platform and of the engine interpreter (the virtualenv and its base), and the
  `gradcam3d` package (never the repository root: it holds `media/` and `var/`);
- read-only access to its own input files only, and write access to its own output folder and its
  private working folder only (`ChildFiles`, or `engine_binds()` for the warm analysis engine);
- when the platform runs as root, it drops to GRADCAM_SANDBOX_USER (default `nobody`) inside
  the sandbox, after clearing its supplementary groups and capability bounding set; folders it
  writes are chowned to that user for the run and back to the platform's user afterwards. As
  another user, bubblewrap maps the platform's own uid into a user namespace instead (only root
  can switch users), and the read-only binds keep the child from writing its inputs.

Inside the sandbox (or directly, with GRADCAM_SANDBOX=off, for development only) a tiny exec
wrapper (`python -I -S`, stdlib only) sets the resource limits (RLIMIT_AS for children that do
not import TensorFlow, RLIMIT_CPU, RLIMIT_FSIZE, no core files), sets no_new_privs and the
parent-death signal (after the uid change, which would clear it), and execs the command. It is
an exec wrapper rather than `preexec_fn` because worker and web processes have threads.

The number of these children running at once on a machine is capped by `child_slot()`: a file
lock per slot in VAR_DIR, held by the launching process while its child runs (the kernel drops
it when that process dies), waited for for a bounded time. The warm analysis engines do NOT take
a slot: there is exactly one running job plus one idle spare per django-q2 worker process, so
their number is already fixed by GRADCAM_WORKERS, and their memory is bounded per engine by the
RSS watch; a spare holding a slot while it idles would starve uploads, and an analysis that
waited for a slot behind uploads would fail although the queue itself already makes it wait.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

MODE_BWRAP = "bwrap"
MODE_OFF = "off"
JOB_DIR = "/job"
IN_DIR = "/job/in"  # the child's input files, read-only
OUT_DIR = "/job/out"  # the child's output folder, the only place it may write besides its working folder
SLOTS_FOLDER_NAME = "engine-slots"
_TMPFS_BYTES = 256 * 1024 * 1024  # the sandbox's own /tmp: RAM-backed, so kept small
_CPU_GRACE_SECONDS = 5  # SIGXCPU at the soft limit (a clear exit status), SIGKILL this much later
_WRAPPER_FAILED = 126
_SLOT_POLL_SECONDS = 0.1
_SYSTEM_ROOTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Read-only, world-readable and free of secrets; the dynamic linker and a few libraries look here.
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/fonts",
)

# Runs with `python -I -S`: sets the limits, drops to the sandbox user if asked, sets no_new_privs
# and the parent-death signal (a uid change clears it, so it comes after), then execs the command.
# argv[1] is "NAME=value,..." (AS, CPU, FSIZE, CORE in bytes/seconds; uid, gid; parent pid).
_EXEC_WRAPPER = r"""
import ctypes, os, resource, sys
spec = dict(item.split("=", 1) for item in sys.argv[1].split(",") if item)
libc = ctypes.CDLL(None, use_errno=True)
def fail(message):
    sys.stderr.write("engine wrapper: %s (errno %d)\n" % (message, ctypes.get_errno()))
    sys.stderr.flush()
    os._exit(126)
for name in ("AS", "CPU", "FSIZE", "CORE"):
    if name in spec:
        kind = getattr(resource, "RLIMIT_" + name)
        soft = hard = int(spec[name])
        if name == "CPU":
            hard = soft + int(spec.get("cpu_grace", "5"))
        old_hard = resource.getrlimit(kind)[1]
        if old_hard != resource.RLIM_INFINITY and os.geteuid() != 0:
            hard = min(hard, old_hard)
            soft = min(soft, hard)
        resource.setrlimit(kind, (soft, hard))
if "uid" in spec:
    uid, gid = int(spec["uid"]), int(spec["gid"])
    for cap in range(64):
        if libc.prctl(24, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # PR_CAPBSET_DROP
            fail("cannot drop capability %d" % cap)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        fail("the user did not change")
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    fail("cannot set no_new_privs")
if libc.prctl(1, 9, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG, SIGKILL
    fail("cannot set the parent-death signal")
if "parent" in spec and os.getppid() != int(spec["parent"]):
    fail("the parent died before the child started")
# No descriptor but stdin/out/err crosses: one opened outside the sandbox would lead out of it.
os.closerange(3, 1 << 20)
os.execvp(sys.argv[2], sys.argv[2:])
"""


class SandboxError(Exception):
    """The sandbox cannot be set up; `str(exc)` is a sentence for the log and the system check."""


class SlotsBusy(Exception):
    """No slot for another engine child became free within GRADCAM_CHILD_SLOT_WAIT seconds."""


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the sandbox at `inside`, read-only unless `writable`."""

    host: Path
    inside: str
    writable: bool = False
    device: bool = False  # a device node (`--dev-bind`): the GPU's, for the analysis engine only


@dataclass(frozen=True)
class ResourceLimits:
    """Per-process limits of a child. `memory_mb` None: no address-space limit (TensorFlow
    reserves far more virtual memory than it touches; the analysis engine's RSS is watched)."""

    memory_mb: int | None
    cpu_seconds: int
    file_mb: int


def mode() -> str:
    return str(settings.GRADCAM_SANDBOX)


def enabled() -> bool:
    return mode() == MODE_BWRAP


def child_identity() -> tuple[int, int] | None:
    """(uid, gid) the child switches to inside the sandbox: only when we are root (nobody else can)."""
    if not enabled() or os.geteuid() != 0:
        return None
    return int(settings.GRADCAM_SANDBOX_UID), int(settings.GRADCAM_SANDBOX_GID)


def child_limits() -> ResourceLimits:
    """Limits of the short-lived children (inspect, probe, transcode, preview): no TensorFlow."""
    return ResourceLimits(
        memory_mb=int(settings.GRADCAM_CHILD_MEMORY_MB),
        cpu_seconds=int(settings.GRADCAM_CHILD_CPU_SECONDS),
        file_mb=int(settings.GRADCAM_CHILD_FILE_MB),
    )


def engine_limits() -> ResourceLimits:
    """Limits of the TensorFlow children (the analysis engine, the demo builder): memory is watched as RSS."""
    return ResourceLimits(
        memory_mb=None,
        cpu_seconds=int(settings.GRADCAM_ANALYSIS_CPU_SECONDS),
        file_mb=int(settings.GRADCAM_CHILD_FILE_MB),
    )


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


# --------------------------------------------------------------------------- argv
def _exec_wrapper_argv(
    argv: Sequence[str], *, limits: ResourceLimits, identity: tuple[int, int] | None, parent_pid: int | None
) -> list[str]:
    spec = {
        "CPU": limits.cpu_seconds,
        "cpu_grace": _CPU_GRACE_SECONDS,
        "FSIZE": limits.file_mb * 1024 * 1024,
        "CORE": 0,  # a core file would land in the output folder
    }
    if limits.memory_mb is not None:
        spec["AS"] = limits.memory_mb * 1024 * 1024
    if identity is not None:
        spec["uid"], spec["gid"] = identity
    if parent_pid is not None:
        spec["parent"] = parent_pid
    encoded = ",".join(f"{name}={value}" for name, value in spec.items())
    return [sys.executable, "-I", "-S", "-c", _EXEC_WRAPPER, encoded, *map(str, argv)]


def wrap(argv: Sequence[str], *, binds: Sequence[Bind], cwd: str, limits: ResourceLimits) -> list[str]:
    """The argv that runs `argv` with `limits`, inside the sandbox seeing only `binds` (plus what
    any Python child needs) when the sandbox is on. `cwd` is the child's working folder as it sees it.

    Start it with `start_new_session=True`: killing that group kills the child's whole tree (with
    the sandbox, killing bubblewrap ends its pid namespace).
    """
    if not enabled():
        return _exec_wrapper_argv(argv, limits=limits, identity=None, parent_pid=os.getpid())
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxError("bubblewrap (bwrap) is not on PATH (install it with: apt-get install bubblewrap)")
    inner = _exec_wrapper_argv(argv, limits=limits, identity=child_identity(), parent_pid=None)
    return [
        bwrap,
        *_namespace_options(),
        *_mount_options([*runtime_binds(), *binds]),
        "--chdir",
        cwd,
        "--",
        *inner,
    ]


def _namespace_options() -> list[str]:
    options = [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
    ]
    if os.geteuid() != 0:
        # Only root can switch to another user; anyone else gets a user namespace of their own
        # uid, in which the child may not create further user namespaces.
        options[:0] = ["--unshare-user", "--disable-userns"]
    return options


def _mount_options(binds: Sequence[Bind]) -> list[str]:
    options = [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(_TMPFS_BYTES),
        "--tmpfs",
        "/tmp",
    ]
    made: set[str] = {"/", "/proc", "/dev", "/tmp"}
    for root in _SYSTEM_ROOTS:
        if os.path.islink(root):
            options += ["--symlink", os.readlink(root), root]
        elif os.path.isdir(root):
            options += ["--ro-bind", root, root]
        made.add(root)
    for etc_path in _ETC_FILES:
        if os.path.exists(etc_path):
            options += [*_parent_dirs(etc_path, made), "--ro-bind", etc_path, etc_path]
            made.add(etc_path)
    directories: list[str] = [bind.inside for bind in binds if bind.host.is_dir()]
    for bind in sorted(binds, key=lambda item: (item.inside.count("/"), item.inside)):
        if any(_is_within(bind.inside, other) for other in directories if other != bind.inside):
            continue  # already visible through a bound folder that contains it
        options += _parent_dirs(bind.inside, made)
        if bind.host.exists():  # else the child reports the missing file itself
            kind = "--dev-bind" if bind.device else "--bind" if bind.writable else "--ro-bind"
            options += [kind, str(bind.host), bind.inside]
        made.add(bind.inside)
    return options


def _parent_dirs(inside: str, made: set[str]) -> list[str]:
    """`--dir` for each missing ancestor, world-traversable (bubblewrap's default is 0700 as root)."""
    options: list[str] = []
    parts = Path(inside).parts[1:-1]
    for depth in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:depth])
        if ancestor not in made:
            options += ["--perms", "0755", "--dir", ancestor]
            made.add(ancestor)
    return options


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _under_system_root(path: Path) -> bool:
    return any(_is_within(str(path), root) for root in _SYSTEM_ROOTS)


def runtime_binds() -> list[Bind]:
    """What any engine child needs to run, read-only: the Python prefixes, the engine interpreter,
    the `gradcam3d` package and the `demo` builder (code only). Refuses a folder that would expose
    media, var or the database."""
    paths: list[Path] = []
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        paths.append(Path(prefix).resolve())
    engine = str(settings.GRADCAM_ENGINE_PYTHON)
    paths += _interpreter_paths(Path(engine if os.path.isabs(engine) else shutil.which(engine) or engine))
    paths.append(Path(settings.BASE_DIR).resolve() / "gradcam3d")
    paths.append(Path(settings.BASE_DIR).resolve() / "demo")
    binds: list[Bind] = []
    for path in dict.fromkeys(paths):
        if str(path) == "/" or _under_system_root(path):
            continue
        _refuse_private(path)
        binds.append(Bind(host=path, inside=str(path)))
    return binds


def _interpreter_paths(engine: Path) -> list[Path]:
    """The engine interpreter's virtualenv and base prefix, or (a stand-in script) the file itself."""
    absolute = Path(os.path.abspath(engine))
    venv = absolute.parent.parent
    config = venv / "pyvenv.cfg"
    if config.is_file():
        paths = [venv.resolve()]
        for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                paths.append(Path(value.strip()).resolve().parent)
        return paths
    return [absolute, absolute.resolve()]


def _private_paths() -> list[Path]:
    private = [Path(settings.MEDIA_ROOT).resolve(), Path(settings.VAR_DIR).resolve()]
    database = settings.DATABASES["default"]
    if str(database.get("ENGINE", "")).endswith("sqlite3") and database.get("NAME"):
        private.append(Path(str(database["NAME"])).resolve().parent)
    return private


def _refuse_private(path: Path) -> None:
    for private in _private_paths():
        if _is_within(str(private), str(path)):
            raise SandboxError(
                f"the sandbox would have to show {path} to engine children, and it contains {private} "
                "(media, var or the database): move the virtualenv or GRADCAM_ENGINE_PYTHON elsewhere"
            )


def decode_exit_status(status: int | None, *, sandboxed: bool) -> int | None:
    """bubblewrap exits with 128+N when its child is killed by signal N: report that as -N."""
    if sandboxed and status is not None and 128 < status < 128 + 65:
        return -(status - 128)
    return status


# --------------------------------------------------------------------------- files
def _platform_ids() -> tuple[int, int]:
    return os.getuid(), os.getgid()


def give_to_child(folder: Path) -> None:
    """Make `folder` (the child's own output folder) and the folders in it writable for the
    sandbox user, when it is another user, so it can create and replace files there (the demo builder
    rebuilding into an existing demo). Files already there stay ours; links are not followed."""
    identity = child_identity()
    if identity is None:
        return
    for top, folders, _ in os.walk(folder, followlinks=False):
        for name in folders:
            os.lchown(Path(top) / name, *identity)
    os.chown(folder, *identity)
    os.chmod(folder, 0o700)


def take_back(folder: Path) -> None:
    """After the child is dead: everything in `folder` becomes the platform's again, with the
    modes the platform's umask gives, so another process running as the sandbox user (`nobody`
    is shared) can never change stored results. Symbolic links are never followed."""
    if child_identity() is None or not folder.exists():
        return
    owner = _platform_ids()
    umask = _current_umask()
    for top, folders, files in os.walk(folder, followlinks=False):
        for name in [*folders, *files]:
            _reclaim(Path(top) / name, owner=owner, umask=umask)
    _reclaim(folder, owner=owner, umask=umask)


def _current_umask() -> int:
    # Read, not set-and-restore: os.umask(0) would briefly apply to every thread of this process.
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _reclaim(path: Path, *, owner: tuple[int, int], umask: int) -> None:
    try:
        info = os.lstat(path)
        os.lchown(path, *owner)
        if stat.S_ISDIR(info.st_mode):
            os.chmod(path, 0o777 & ~umask)
        elif stat.S_ISREG(info.st_mode):
            os.chmod(path, 0o666 & ~umask)
    except FileNotFoundError:
        pass


def readable_by_child(path: Path) -> bool:
    """Whether the child's user may read `path` by its permission bits (bind mounts keep them)."""
    uid, gid = child_identity() or _platform_ids()
    info = path.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IRUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)


def stage_input(source: Path, *, folder: Path, name: str) -> Path:
    """Put `source` into `folder` (bound read-only in the child) as `name`, without copying when
    possible: a hard link when the child may read it (the read-only bind keeps even a child of our
    own uid from writing the shared inode), else a copy the child may read."""
    target = folder / name
    if readable_by_child(source):
        try:
            os.link(source, target)
            return target
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
    shutil.copyfile(source, target)
    os.chmod(target, 0o644)
    return target


def safe_suffix(path: Path) -> str:
    suffix = path.suffix
    return suffix if 1 < len(suffix) <= 16 and suffix[1:].isalnum() else ""


class ChildFiles:
    """The files one short-lived child may read, the one folder it may write, and its private
    working folder (its cwd, HOME and TMPDIR, removed afterwards).

    `inside(path)` is the path to give the child for a host path; `host(path)` maps a path the
    child printed back to the host. Paths are fixed at construction, so arguments can be built
    before the files are prepared (`with files:`).
    """

    def __init__(self, *, inputs: Sequence[Path] = (), output_dir: Path | None = None) -> None:
        self.inputs = [Path(os.path.abspath(path)) for path in inputs]
        self.output_dir = Path(os.path.abspath(output_dir)) if output_dir is not None else None
        self.sandboxed = enabled()
        self._inside: dict[Path, str] = {}
        names: set[str] = set()
        for index, path in enumerate(self.inputs):
            name = path.name if path.name not in names else f"{index}-{path.name}"
            names.add(name)
            self._inside[path] = f"{IN_DIR}/{name}" if self.sandboxed else str(path)
        self.working_dir: Path | None = None
        self._copies: Path | None = None
        self._sources: dict[str, Path] = {}

    def inside(self, path: str | os.PathLike[str]) -> str:
        absolute = Path(os.path.abspath(path))
        if absolute in self._inside:
            return self._inside[absolute]
        if self.output_dir is not None and self.sandboxed and _is_within(str(absolute), str(self.output_dir)):
            return OUT_DIR + str(absolute)[len(str(self.output_dir)) :]
        return str(absolute)

    def host(self, inside: str) -> Path:
        if self.output_dir is not None and self.sandboxed and _is_within(inside, OUT_DIR):
            return Path(str(self.output_dir) + inside[len(OUT_DIR) :])
        return Path(inside)

    def __enter__(self) -> ChildFiles:
        self.working_dir = Path(tempfile.mkdtemp(prefix="gradcam-engine-"))
        try:
            give_to_child(self.working_dir)
            if self.output_dir is not None:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                give_to_child(self.output_dir)
            self._sources = {inside: self._readable_source(path) for path, inside in self._inside.items()}
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _readable_source(self, path: Path) -> Path:
        if not self.sandboxed or not path.is_file() or readable_by_child(path):
            return path
        if self._copies is None:  # the child's user may not read it: show it a copy
            self._copies = Path(tempfile.mkdtemp(prefix="gradcam-input-"))
            os.chmod(self._copies, 0o755)
        return stage_input(
            path, folder=self._copies, name=f"{len(list(self._copies.iterdir()))}{safe_suffix(path)}"
        )

    def __exit__(self, *exc_info: Any) -> None:
        if self.output_dir is not None:
            take_back(self.output_dir)
        for folder in (self.working_dir, self._copies):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def binds(self) -> list[Bind]:
        assert self.working_dir is not None, "use `with files:` before starting the child"
        binds = [Bind(host=self.working_dir, inside=str(self.working_dir), writable=True)]
        binds += [Bind(host=source, inside=inside) for inside, source in self._sources.items()]
        if self.output_dir is not None:
            binds.append(Bind(host=self.output_dir, inside=OUT_DIR, writable=True))
        return binds

    def environment(self) -> dict[str, str]:
        assert self.working_dir is not None
        return {"TMPDIR": str(self.working_dir), "HOME": str(self.working_dir)}


def engine_binds(*, input_dir: Path, output_dir: Path) -> list[Bind]:
    """The warm analysis engine's view: an input folder filled only when its job arrives
    (`stage_input`), read-only, and its output folder. Once mounted they are bound by inode, so
    renaming the engine's working folder (a spare taken by a job) changes nothing inside; before,
    it would make bubblewrap fail (`runner._wait_until_mounted`)."""
    if not enabled():
        return []
    return [
        Bind(host=input_dir, inside=IN_DIR),
        Bind(host=output_dir, inside=OUT_DIR, writable=True),
        *gpu_device_binds(),
    ]


GPU_DEVICE_GLOB = "/dev/nvidia*"


def gpu_device_binds() -> list[Bind]:
    """The NVIDIA device nodes this machine has (a GPU worker: the container runtime put them in
    its /dev), so the sandboxed engine can use the GPU; none elsewhere. The sandbox's own /dev is
    minimal, so without these TensorFlow would silently fall back to the CPU."""
    import glob
    import stat as stat_module

    devices = []
    for path in sorted(glob.glob(GPU_DEVICE_GLOB)):
        try:
            if stat_module.S_ISCHR(os.stat(path).st_mode):
                devices.append(Bind(host=Path(path), inside=path, device=True))
        except OSError:
            continue
    return devices


# --------------------------------------------------------------------------- limits and the cap
def limit_message(*, exit_status: int | None, text: str, limits: ResourceLimits) -> str | None:
    """A sentence saying which limit stopped a child, from its exit status and output, or None."""
    if exit_status == -signal.SIGXCPU:
        return f"it used more than its CPU-time limit of {limits.cpu_seconds} seconds"
    if exit_status == -signal.SIGXFSZ or "File too large" in text or "[Errno 27]" in text:
        return f"it tried to write a file larger than the limit of {limits.file_mb} MB"
    memory_signs = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
    if limits.memory_mb is not None and any(sign in text for sign in memory_signs):
        return f"it needed more memory than the limit of {limits.memory_mb} MB"
    return None


@contextmanager
def child_slot() -> Iterator[int]:
    """Hold one of GRADCAM_CHILD_SLOTS machine-wide slots while the block runs; SlotsBusy if none
    frees up within GRADCAM_CHILD_SLOT_WAIT seconds. A slot is a `flock` on a file in VAR_DIR,
    released by the kernel if this process dies."""
    folder = Path(settings.VAR_DIR) / SLOTS_FOLDER_NAME
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    slots = int(settings.GRADCAM_CHILD_SLOTS)
    deadline = time.monotonic() + float(settings.GRADCAM_CHILD_SLOT_WAIT)
    while True:
        for index in range(slots):
            handle = os.open(folder / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            try:
                yield index
            finally:
                os.close(handle)  # releases the lock
            return
        if time.monotonic() >= deadline:
            raise SlotsBusy(f"all {slots} slots for engine children stayed busy")
        time.sleep(_SLOT_POLL_SECONDS)


# --------------------------------------------------------------------------- start-up check
def sandbox_problem() -> str | None:
    """Why the configured sandbox cannot run a trivial Python child, or None when it can."""
    if not enabled():
        return None
    try:
        argv = wrap(
            [sys.executable, "-I", "-S", "-c", "pass"],
            binds=[],
            cwd="/tmp",
            limits=ResourceLimits(memory_mb=None, cpu_seconds=30, file_mb=16),
        )
        completed = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            start_new_session=True,
        )
    except (SandboxError, ImproperlyConfigured) as exc:
        return str(exc)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be started ({exc})"
    if completed.returncode != 0:
        detail = " ".join(completed.stderr.decode("utf-8", "replace").split())[-300:]
        return f"bubblewrap could not run a trivial command (exit status {completed.returncode}: {detail})"
    return None


def check_sandbox(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Deployment check (`check --deploy`, registered by AnalysesConfig): an Error when
    GRADCAM_SANDBOX=bwrap cannot run, a Warning when the sandbox is off. Commands that start
    engine children also call `require_working_sandbox`; the others (migrate, runserver, shell)
    never start one, so a missing bubblewrap does not stop them."""
    if not enabled():
        return [
            checks.Warning(
                "GRADCAM_SANDBOX=off: uploaded models and videos are parsed WITHOUT the sandbox, as the "
                "platform's own user, with network access and read access to its database and every "
                "user's files.",
                hint="For development only. Install bubblewrap (apt-get install bubblewrap) and unset GRADCAM_SANDBOX.",
                id="analyses.W001",
            )
        ]
    problem = sandbox_problem()
    if problem is None:
        return []
    return [
        checks.Error(
            f"GRADCAM_SANDBOX=bwrap, but the sandbox for engine children does not work: {problem}.",
            hint=(
                "Install bubblewrap with `apt-get install bubblewrap` (and allow user namespaces when the "
                "platform does not run as root), or, for development only, set GRADCAM_SANDBOX=off with DEBUG=1."
            ),
            id="analyses.E001",
        )
    ]


def require_working_sandbox() -> None:
    """For the processes that start engine children (run_studio, make_demo, each django-q2
    worker): ImproperlyConfigured with the check's message and hint when the configured sandbox
    cannot run, before any uploaded file is touched."""
    for message in check_sandbox():
        if message.is_serious():
            raise ImproperlyConfigured(f"{message.msg} {message.hint}")
