"""A sandbox for untrusted notebooks: Debian's ``bubblewrap`` (``bwrap``) plus resource limits.

What runs inside sees:

* **no network** — its own network namespace, with only its own loopback;
* **a read-only system** — ``/usr`` (and the ``/bin``, ``/lib`` links), the Python installation, the venv and kit;
  nothing else of the host (no ``/home``, ``/root``, ``/etc`` beyond the dynamic linker's cache, no other learner);
* **kit without its exercises** — ``kit/exercises`` is replaced by the recording harness (no references);
* **a private, empty HOME and /tmp** (tmpfs), and one writable folder: the job (a copy of the notebook);
* **its own PID namespace** — it sees only its own processes, and when the run ends or is killed everything in it
  dies (kernel, ``setsid`` children, daemons); ``--die-with-parent`` ties it to the grader;
* **limits** — address space per process (``mem``), CPU seconds, file size, open files, and (as root, where the
  sandbox runs as an unprivileged uid of its own) the number of processes.

It does not limit the total disk space the job folder may take (only each file's size), and the memory limit is per
process. :func:`available` says whether this machine can run it; ``kit grade`` refuses without it unless told
``--no-sandbox``.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 61000  # as root, job slot k runs as uid/gid UID_BASE + k


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class Limits:
    mem: int = 2 * 2 ** 30        # bytes of address space per process
    cpu: int = 900                # CPU seconds per process
    fsize: int = 256 * 2 ** 20    # bytes per file written
    nproc: int = 128              # processes (as root: of the sandbox's own uid)
    nofile: int = 1024


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def kit_dir() -> Path:
    import kit
    return Path(kit.__file__).resolve().parent


def exercises_view(folder: Path) -> Path:
    """A folder to mount over ``kit/exercises`` inside: the harness as ``__init__``, the wire and input functions."""
    src = kit_dir() / "exercises"
    view = Path(folder) / "exercises"
    view.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "harness.py", view / "__init__.py")
    for name in ("wire.py", "inputs.py"):
        shutil.copyfile(src / name, view / name)
    return view


def _etc_files(folder: Path, uid: int) -> dict[str, Path]:
    """A minimal ``/etc/passwd`` and ``/etc/group`` naming the learner (some libraries ask who they are)."""
    etc = Path(folder) / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text(f"root:x:0:0::/root:/bin/sh\nlearner:x:{uid}:{uid}::/home/learner:/bin/sh\n")
    (etc / "group").write_text(f"root:x:0:\nlearner:x:{uid}:\n")
    return {"/etc/passwd": etc / "passwd", "/etc/group": etc / "group"}


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


def _python_binds() -> list[str]:
    """The Python installation and the venv, read-only, at their own paths (shebangs and pyvenv.cfg use them)."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent.parent}
    roots = {r for r in roots if str(r) not in ("/", "/usr") and not str(r).startswith("/usr/")}
    return [a for r in sorted(roots) for a in ("--ro-bind", str(r), str(r))]


def _parent_dirs(destinations) -> list[str]:
    """``--perms 0755 --dir`` for every folder above the bind destinations (bwrap would make them 0700, which an
    unprivileged uid cannot enter)."""
    parents = sorted({str(p) for d in destinations for p in Path(d).parents if str(p) != "/"},
                     key=lambda p: (p.count("/"), p))
    return [a for p in parents for a in ("--perms", "0755", "--dir", p)]


def command(job: Path, argv: list[str], *, view: Path, slot: int = 0, env: dict | None = None) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in the sandbox with ``job`` as its only writable folder."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    root = _is_root()
    uid = UID_BASE + slot if root else os.getuid()
    kit = kit_dir()
    cmd = [bwrap, "--die-with-parent", "--new-session"]
    if root:  # no user namespace: the sandbox drops to its own unprivileged uid (so process limits apply)
        cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-all"]
    binds = _python_binds() + ["--ro-bind", str(kit), str(kit), "--ro-bind", str(view), str(kit / "exercises")]
    cmd += _system_binds() + _parent_dirs(binds[2::3]) + binds
    for dest, src in _etc_files(view.parent, uid).items():
        cmd += ["--ro-bind", str(src), dest]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home", "--dir", "/home/learner",
            "--bind", str(job), "/job", "--chdir", "/job", "--clearenv"]
    base_env = {"HOME": "/home/learner", "USER": "learner", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
                "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
                "KIT_OFFLINE": "1", "KIT_GRADE_JOB": "/job", "MPLBACKEND": "Agg"}
    for k, v in {**base_env, **(env or {})}.items():
        cmd += ["--setenv", k, str(v)]
    cmd += ["--"]
    if root:
        cmd += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all"]
    return cmd + list(argv)


def preexec(limits: Limits):
    """A ``preexec_fn`` that sets ``limits`` (inherited by everything in the sandbox)."""
    def apply():
        for what, value in ((resource.RLIMIT_AS, limits.mem), (resource.RLIMIT_CPU, limits.cpu),
                            (resource.RLIMIT_FSIZE, limits.fsize), (resource.RLIMIT_NOFILE, limits.nofile),
                            (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(what, (value, value))
        if _is_root():
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
    return apply


def prepare_job(job: Path, slot: int) -> None:
    """Make ``job`` (and everything in it) writable by the sandbox's uid."""
    if not _is_root():
        return
    uid = UID_BASE + slot
    for dirpath, dirnames, filenames in os.walk(job):
        os.chown(dirpath, uid, uid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


_AVAILABLE: dict[str, str | None] = {}


def available() -> str | None:
    """``None`` when a sandbox can be started here, else one sentence saying why not (checked once)."""
    if "why" in _AVAILABLE:
        return _AVAILABLE["why"]
    why = None
    if not sys.platform.startswith("linux"):
        why = f"no sandbox on {sys.platform}: kit's sandbox needs Linux with bubblewrap"
    elif shutil.which("bwrap") is None:
        why = "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt install bubblewrap)"
    else:
        with tempfile.TemporaryDirectory(prefix="kit-sandbox-probe-") as tmp:
            job = Path(tmp) / "job"
            job.mkdir()
            prepare_job(job, 0)
            try:
                cmd = command(job, [sys.executable, "-c", "import kit.exercises as e, os; "
                                    "open('/job/ok', 'w').write(str(hasattr(e, 'record')))"],
                              view=exercises_view(Path(tmp) / "view"))
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, preexec_fn=preexec(Limits()))
                ok = p.returncode == 0 and (job / "ok").read_text() == "True"
                if not ok:
                    lines = [l for l in (p.stderr or "").splitlines() if l.strip()]
                    why = "bubblewrap could not start a sandbox here" + (f" ({lines[-1][:200]})" if lines else "")
            except (OSError, subprocess.SubprocessError, SandboxUnavailable) as e:
                why = f"bubblewrap could not start a sandbox here ({e})"
    _AVAILABLE["why"] = why
    return why
