"""``python -m privfed.runtime.flower.fastexec [flower-superexec arguments]``: Flower's SuperExec with warm ClientApps.

A SuperNode in Flower 1.42 runs every message in a fresh ``flwr-clientapp`` process that its SuperExec starts: a new
Python interpreter that imports flwr, the app, privfed and (to train or evaluate) torch before it handles a message
that then takes milliseconds. Those imports are most of a protocol phase's cost on a node. Flower 1.42 offers no
long-running ClientApp (``flwr-clientapp`` serves one task and exits; its prestarted "warm" executors serve only
Kubernetes agent/model/connector tasks). This launcher is Flower's own ``flower-superexec`` whose ClientApp launch is
a ``fork`` of a process that imported all of that once, at start: the child calls Flower's own ``run_clientapp``
with the task's token, exactly what ``flwr-clientapp --token ...`` would do, and exits. A child starts so soon that
it usually asks for the request's objects before its SuperNode has them: it retries within 0.01-0.05 s instead of
Flower's 1-10 s backoff (:mod:`privfed.runtime.flower.objects`). Each message still runs in a
process of its own (the per-message isolation Flower's design relies on: node state only through
``context.state``), it only starts warm. With ``PRIVFED_CLIENTAPP_THREADS=n`` (loopback sets cores // nodes) each
child trains with n torch threads, so nodes sharing one machine do not oversubscribe its cores.

Fork safety: the parent imports modules and never runs torch operations, so no OpenMP or intra-op thread pool
exists to be copied; children are reaped automatically (``SIGCHLD`` ignored). Any task type other than a ClientApp
is launched by Flower's own executor unchanged. ``PRIVFED_FORK_CLIENTAPPS=0`` turns the fork off (then this is
``flower-superexec``).

Threat model: none of its own; the forked child holds nothing the parent did not import (no keys, no node state,
no message: it pulls all of those itself from the SuperNode's runtime API with the task's one-time token). For
loopback trials and tests (started by :mod:`privfed.runtime.flower.fastnode`).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any

from .objects import quicken_object_pulls

__all__ = ["main", "PRELOAD", "FORK_ENV", "THREADS_ENV", "threads_for"]

FORK_ENV = "PRIVFED_FORK_CLIENTAPPS"
#: torch intra-op threads of each forked ClientApp (unset: torch's default, one per core). Loopback sets it to
#: cores // nodes: N nodes training at once on one machine with a thread per core each oversubscribe it, and a
#: training step then waits for whichever thread the scheduler preempted (measured: the same round's training took
#: 2.9-10 s with two threads per node, three nodes, two cores)
THREADS_ENV = "PRIVFED_CLIENTAPP_THREADS"
#: imported once in the parent so that every forked ClientApp starts with them loaded
PRELOAD: tuple[str, ...] = (
    "flwr.supernode.runtime.run_clientapp", "numpy", "torch", "privfed.apps.flower.client_app",
    "privfed.apps.flower.training", "privfed.apps.flower.secure_eval", "privfed.fl.models", "privfed.fl.train",
    "privfed.fl.schema", "protocols.secagg", "protocols.secagg.client", "protocols.plaintext",
    # what every privfed ClientApp imported anew before (a trace of the modules new in a forked child): the Flower
    # app module imports both apps, and the ServerApp's module the CKKS key authority and TenSEAL (~50 ms a phase)
    "privfed.apps.flower.server_app", "privfed.runtime.flower.keys", "protocols.ckks", "tenseal",
)


def threads_for(raw: str | None) -> int | None:
    """The thread count ``PRIVFED_CLIENTAPP_THREADS`` asks for (None: unset or not a positive integer)."""
    try:
        value = int(raw) if raw else 0
    except ValueError:
        return None
    return value if value > 0 else None


def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional module the ClientApp then imports (and reports) itself
            continue
    try:  # the compiled quantizer too (numba's import and cache load, ~0.2 s a process otherwise)
        importlib.import_module("protocols.jit").warm_up()
    except Exception:  # noqa: BLE001 - without it the ClientApp compiles or loads on first use (same values)
        pass


def _die_with_parent(parent: int | None = None) -> None:
    """Linux: SIGKILL when the parent dies (a killed SuperNode or SuperExec leaves no orphan behind); exit at once if
    ``parent`` already died before this could be set."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _run_child(spec: Any, parent: int) -> None:
    """In the forked child: Flower's ClientApp runtime for this one task, then exit (never return to the loop)."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent(parent)
        threads = threads_for(os.environ.get(THREADS_ENV))
        if threads is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        from flwr.supercore.tls import validate_and_resolve_root_certificates
        from flwr.supernode.runtime.run_clientapp import run_clientapp

        run_clientapp(
            runtime_api_address=spec.runtime_api_address, token=spec.token, insecure=spec.insecure,
            certificates=validate_and_resolve_root_certificates(spec.root_certificates_path, spec.insecure),
            parent_pid=spec.parent_pid, runtime_dependency_install=spec.runtime_dependency_install)
        code = 0
    except SystemExit as exc:  # flwr_exit ends the task with sys.exit
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must never fall back into the parent's loop
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _install_fork_launch() -> None:
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import subprocess_executor
    from flwr.supercore.superexec.executor.types import LaunchResult

    original = subprocess_executor.SubprocessExecutor.launch
    # a warm ClientApp asks its SuperNode for the request before the node finished pulling it from the SuperLink:
    # retry those objects within 0.01-0.05 s, not after Flower's 1-10 s backoff (inherited by every fork)
    quicken_object_pulls("flwr.supercore.inflatable.inflatable_utils")

    def launch(self: Any, spec: Any) -> Any:
        if spec.task_type != TaskType.CLIENT_APP:
            return original(self, spec)
        parent = os.getpid()
        if os.fork() == 0:
            _run_child(spec, parent)
        return LaunchResult.accepted()

    subprocess_executor.SubprocessExecutor.launch = launch  # type: ignore[method-assign]


def main() -> None:
    _die_with_parent()
    if os.environ.get(FORK_ENV, "1") != "0" and hasattr(os, "fork"):
        _preload()
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked ClientApps are reaped by the kernel
        _install_fork_launch()
    from flwr.supercore.cli import flower_superexec

    sys.argv[0] = "flower-superexec"
    flower_superexec()


if __name__ == "__main__":
    main()
