"""Run a notebook's cells in a kernel so that a run can fail, but never hang silently.

papermill parameterises the notebook and records each cell's state; this module gives it a kernel
client that

* never sends on the shell socket while waiting there for a reply. nbclient's stand-in for the
  ipywidgets ``Output`` widget used to send the widget's state back to the kernel on the shell
  channel while the execute reply was awaited on the same socket; pyzmq's asyncio poller then
  sometimes missed the reply's wake-up (libzmq's edge-triggered ``ZMQ_FD``): the reply sat in the
  client's socket (``ZMQ_EVENTS`` said ``POLLIN``) while the client waited for ever. That was the
  hang seen in sweeps and CI. The kernel does not need that state in a headless run, so it is not sent.
* waits for messages in one-second slices: a timed-out wait re-checks the socket level-triggered, so
  a wake-up lost for any other reason costs at most a second;
* has a stall watchdog: when the kernel reported the cell finished (``idle``) but no reply came, or
  never acknowledged the request while using no CPU, for ``stall_timeout`` seconds, it raises
  :class:`KernelStalled` (``kit.lessons.run.execute`` retries once with a fresh kernel);
* applies an explicit per-cell time limit (:class:`CellTimeLimit`), and turns a dead kernel into
  :class:`KernelDied` within about a second, naming the cell.

Kernels talk over Unix sockets in a private temporary folder (POSIX): no TCP ports to pick or to
collide between parallel runs, nothing listening on the network.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from time import monotonic

# nbformat validates notebooks with jsonschema, whose optional IRI checker (rfc3987-syntax, installed for
# jupyter-events) compiles a Lark grammar when imported: 1.7 s added to every kit command and sweep job.
# Notebook schemas use no IRI formats, so the harness goes without it (jsonschema skips a missing checker).
sys.modules.setdefault("rfc3987_syntax", None)

POLL = 1.0  # seconds: longest a lost wake-up can delay a message
STALL_TIMEOUT = 45.0  # seconds without progress from an idle kernel before the run counts as stalled


class RunError(Exception):
    """A run that could not finish, with one line for the user: notebook, cell and what happened."""

    reason = "error"

    def __init__(self, message: str, *, notebook: str = "", cell: int | None = None):
        super().__init__(message)
        self.notebook, self.cell = notebook, cell


class KernelDied(RunError):
    reason = "kernel died"


class KernelStalled(RunError):
    reason = "kernel stalled"


class CellTimeLimit(RunError):
    reason = "cell time limit"


def describe_cell(cell, number: int | None) -> str:
    """``cell 7 (`history = fit(model, …`)``: the cell's place in the notebook and its first line."""
    first = next((l.strip() for l in str(cell.get("source", "")).splitlines() if l.strip()), "")
    first = first if len(first) <= 60 else first[:57] + "…"
    return (f"cell {number}" if number is not None else "a cell") + (f" (`{first}`)" if first else "")


def _client_class():
    from nbclient.exceptions import CellExecutionComplete, DeadKernelError
    from nbclient.output_widget import OutputWidget
    from nbclient.util import run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from traitlets import Float

    class HeadlessOutputWidget(OutputWidget):
        """nbclient's Output-widget stand-in, minus the state it sent back on the shell channel."""

        def sync_state(self) -> None:
            pass

    class KitNotebookClient(PapermillNotebookClient):
        stall_timeout = Float(STALL_TIMEOUT, allow_none=True).tag(config=True)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.widget_registry = {**self.widget_registry,
                                    "@jupyter-widgets/output": {"OutputModel": HeadlessOutputWidget}}
            self.notebook_name = ""

        # ---- one cell
        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            self._sent_at = self._last_msg = monotonic()
            self._status = None  # the kernel's last execution_state for this cell's request
            self._idle_at = None
            self._cpu = []  # (time, kernel cpu seconds) samples while nothing is heard
            try:
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            except DeadKernelError:
                raise KernelDied(self._dead_message(cell), notebook=self.notebook_name,
                                 cell=self._index(cell)) from None

        execute_cell = run_sync(async_execute_cell)  # nbclient binds its own coroutine here

        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
            deadline = None if timeout is None else self._sent_at + timeout
            while True:
                try:
                    msg = await self.kc.shell_channel.get_msg(timeout=POLL)
                except Empty:
                    try:
                        self._check_progress(cell, timeout, deadline)
                    except RunError:
                        task_poll_kernel_alive.cancel()
                        task_poll_output_msg.cancel()
                        raise
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if self.record_timing:
                    from nbclient.client import timestamp
                    cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
                try:  # the reply came; the outputs follow on iopub within iopub_timeout
                    await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
                except (asyncio.TimeoutError, Empty):
                    task_poll_kernel_alive.cancel()
                    raise KernelStalled(f"{describe_cell(cell, self._index(cell))}: the kernel replied but its "
                                        f"outputs did not arrive within {self.iopub_timeout:g} s",
                                        notebook=self.notebook_name, cell=self._index(cell)) from None
                task_poll_kernel_alive.cancel()
                return msg

        async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
            while True:
                try:
                    msg = await self.kc.iopub_channel.get_msg(timeout=POLL)
                except Empty:
                    continue
                self._last_msg = monotonic()
                if msg["parent_header"].get("msg_id") != parent_msg_id:
                    continue
                if msg["msg_type"] == "status":
                    self._status = msg["content"]["execution_state"]
                    if self._status == "idle":
                        self._idle_at = self._last_msg
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return

        # ---- the watchdog
        def _check_progress(self, cell, timeout, deadline):
            now, where = monotonic(), describe_cell(cell, self._index(cell))
            if deadline is not None and now > deadline:
                raise CellTimeLimit(f"{where} ran longer than its time limit of {timeout:g} s",
                                    notebook=self.notebook_name, cell=self._index(cell))
            stall = self.stall_timeout
            if not stall:
                return
            if self._idle_at is not None and now - self._idle_at > stall:
                raise KernelStalled(f"{where}: the kernel finished the cell but its reply did not arrive "
                                    f"within {stall:g} s", notebook=self.notebook_name, cell=self._index(cell))
            if self._status is None and now - self._last_msg > stall and self._kernel_idle(now, stall):
                raise KernelStalled(f"{where}: the kernel is idle and did not answer the request within {stall:g} s",
                                    notebook=self.notebook_name, cell=self._index(cell))

        def _kernel_idle(self, now: float, window: float) -> bool:
            """True when the kernel (with its children) used under 2 % of a core over the last ``window`` s."""
            cpu = _cpu_seconds(_kernel_pid(self.km))
            if cpu is None:
                return True
            self._cpu.append((now, cpu))
            old = [(t, c) for t, c in self._cpu if now - t >= window]
            if not old:
                return False
            t0, c0 = old[-1]
            return (cpu - c0) < 0.02 * (now - t0)

        def _index(self, cell) -> int | None:
            """1-based place of ``cell`` in the notebook as its author sees it (papermill's injected cell not counted)."""
            n = 0
            for c in self.nb.cells:
                if "injected-parameters" not in c.get("metadata", {}).get("tags", []):
                    n += 1
                if c is cell:
                    return n
            return None

        def _dead_message(self, cell) -> str:
            code = _exit_status(self.km)
            return f"{describe_cell(cell, self._index(cell))}: the kernel died{code}: out of memory, killed, or crashed"

    return KitNotebookClient


def _kernel_pid(km) -> int | None:
    prov = getattr(km, "provisioner", None)
    proc = getattr(prov, "process", None)
    return getattr(proc, "pid", None) or getattr(prov, "pid", None)


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil
    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return None
    total = 0.0
    for q in procs:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _exit_status(km) -> str:
    """`` (killed by SIGKILL)`` / `` (exit code 3)`` when the kernel process has gone, else ``""``."""
    import signal
    proc = getattr(getattr(km, "provisioner", None), "process", None)
    code = proc.poll() if proc is not None and hasattr(proc, "poll") else None
    if code is None:
        return ""
    if code < 0:
        try:
            return f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f" (signal {-code})"
    return f" (exit code {code})"


def _engine_class():
    from papermill.engines import NBClientEngine
    from papermill.utils import merge_kwargs, remove_args

    class KitEngine(NBClientEngine):
        """papermill's nbclient engine with :class:`KitNotebookClient`."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                     start_timeout=60, execution_timeout=None, notebook_name="", **kwargs):
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                                 stderr_file=stderr_file)
            client = _client_class()(nb_man, **final)
            client.notebook_name = notebook_name
            return client.execute()

    return KitEngine


def _register_engine() -> str:
    from papermill.engines import papermill_engines
    if "kit" not in papermill_engines._engines:
        papermill_engines.register("kit", _engine_class())
    return "kit"


@contextmanager
def kernel_manager_class():
    """A kernel manager class whose kernels listen on Unix sockets in a fresh private folder (POSIX).

    The socket paths are absolute and short (``/tmp/kit-kernel-…/k-1``): they do not depend on any
    process's working directory and stay under the 107-byte limit of a socket path. The folder is
    removed afterwards. Elsewhere (Windows) jupyter_client's default TCP transport is kept.
    """
    from jupyter_client.manager import AsyncKernelManager
    if os.name != "posix":
        yield AsyncKernelManager
        return
    folder = tempfile.mkdtemp(prefix="kit-kernel-")
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        def _ip_default(self):
            return os.path.join(folder, "k")

    try:
        yield IPCKernelManager
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_notebook(nb_path, out_path, parameters: dict, *, cwd, timeout: float | None, stall_timeout: float | None,
                 allow_errors: bool = False, progress: bool = False, kernel: str = "python3",
                 start_timeout: float = 60):
    """Execute ``nb_path`` into ``out_path`` (papermill: parameters injected, executed notebook saved).

    Raises papermill's ``PapermillExecutionError`` for an error in a cell (unless ``allow_errors``),
    or a :class:`RunError` (kernel died, stalled, cell over its time limit, kernel did not start).
    """
    import papermill as pm
    name = Path(nb_path).name
    engine = _register_engine()
    with kernel_manager_class() as km_class:
        try:
            return pm.execute_notebook(str(nb_path), str(out_path), parameters=parameters, kernel_name=kernel,
                                       language="python", cwd=str(cwd), engine_name=engine, execution_timeout=timeout,
                                       start_timeout=start_timeout, stall_timeout=stall_timeout,
                                       progress_bar=progress, request_save_on_cell_execute=True,
                                       allow_errors=allow_errors, kernel_manager_class=km_class,
                                       notebook_name=name)
        except (RunError, pm.PapermillExecutionError):
            raise
        except RuntimeError as e:  # jupyter_client: "Kernel didn't respond in 60 seconds", a kernel that died at start
            raise RunError(f"the kernel did not start: {e}", notebook=name) from None
