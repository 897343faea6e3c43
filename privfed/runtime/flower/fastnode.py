"""``python -m privfed.runtime.flower.fastnode [flower-supernode arguments]``: Flower's own SuperNode, polling sooner.

Flower 1.42's SuperNode asks the SuperLink for a message, and when there is none it sleeps a hard-coded 3 s
(``flwr.supernode.start_client_internal``; no option or environment variable sets it), then waits for its ClientApp's
reply in 0.5 s steps. A privfed round is several short phases, each a fresh message to every node after all of them
answered the previous one, so those sleeps are most of a phase's cost on loopback: on average 1.5 s per node and up to 3
s for the slowest, every phase. This launcher runs the unmodified ``flower-supernode`` command in this process, with the
idle sleep of that one module capped at ``PRIVFED_NODE_POLL_SECONDS`` (default 0.2 s; 0.05 s for the 2 s after the node
sent a reply, when the next phase is due) and its 0.5 s waits for the ClientApp's reply (a look at its own in-process
state, no request) at 0.01 s. Nothing else changes: same arguments, same process (so a launcher's pid is the SuperNode's
pid and ``stop`` finds it the same way), same protocol with the SuperLink; each empty poll is one small HTTP request
more often.

It also starts the SuperNode's SuperExec as :mod:`privfed.runtime.flower.fastexec` (Flower's SuperExec whose
ClientApp processes are forked warm, imports done, instead of started cold: see there why Flower 1.42's own
options — ``--isolation process``, prestarted executors — do not save that start-up). What Flower offers and privfed
uses as well: ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` (how soon the SuperExec starts a ClientApp for a pulled message).
Its pulls of a request's objects from the SuperLink retry an object still in flight within 0.01-0.05 s instead of
Flower's 1-10 s backoff (:mod:`privfed.runtime.flower.objects`).

Threat model: none of its own; a SuperNode started this way is exactly Flower's. Meant for loopback trials and
tests (``examples/flower/loopback.sh``, :class:`~privfed.runtime.flower.loopback.LoopbackDeployment`); on a real
network the 3 s idle poll is a reasonable load limit on a shared SuperLink, so production nodes use
``flower-supernode`` itself.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from typing import Any

from .objects import quicken_object_pulls

__all__ = ["main", "POLL_ENV", "DEFAULT_POLL_SECONDS", "LOCAL_WAIT_SECONDS", "BUSY_POLL_SECONDS",
           "BUSY_WINDOW_SECONDS", "MARKER"]

POLL_ENV = "PRIVFED_NODE_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 0.2
#: the SuperNode's wait for a reply in its own state, between two looks (Flower: 0.5 s)
LOCAL_WAIT_SECONDS = 0.01
#: the idle poll in the BUSY_WINDOW_SECONDS after the node sent a reply (the next phase's request is due)
BUSY_POLL_SECONDS = 0.05
BUSY_WINDOW_SECONDS = 2.0
_IDLE_SLEEP = 3.0  # Flower's sleep after an empty poll (the one PRIVFED_NODE_POLL_SECONDS caps)
#: how a SuperNode started by this launcher shows in its command line (for tools that look for SuperNodes)
MARKER = "privfed.runtime.flower.fastnode"


def _poll_seconds() -> float:
    raw = os.environ.get(POLL_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_POLL_SECONDS
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.01 <= value <= 3.0):
        raise SystemExit(f"{POLL_ENV} must be a number of seconds in [0.01, 3], got {raw!r}")
    return value


class _CappedTime:
    """The ``time`` module as one Flower module sees it: ``sleep`` capped, everything else unchanged.

    That module sleeps in two places: 3 s after a poll of the SuperLink found no message (a network request each
    time), and 0.5 s steps while it waits for its ClientApp's reply or a reply object to appear in its own in-process
    state (no request at all: capped at :data:`LOCAL_WAIT_SECONDS`, so a reply leaves the node within milliseconds of
    the ClientApp pushing it instead of ~0.1 s later on average). The idle sleep is ``cap``, except in the
    :data:`BUSY_WINDOW_SECONDS` after this node sent a reply (:meth:`replied`): a privfed round's next phase follows
    within about a second, so the node then polls every :data:`BUSY_POLL_SECONDS` (a phase ends only when its
    slowest node has seen the request: with three nodes polling every 0.2 s that is 0.15 s on average, 0.04 s at
    0.05 s). An idle node still polls at ``cap``."""

    def __init__(self, cap: float) -> None:
        self._cap = cap
        self._replied = -math.inf

    def replied(self) -> None:
        self._replied = time.monotonic()

    def sleep(self, seconds: float) -> None:
        seconds = float(seconds)
        if seconds < _IDLE_SLEEP:
            time.sleep(min(seconds, LOCAL_WAIT_SECONDS))
        elif time.monotonic() - self._replied < BUSY_WINDOW_SECONDS:
            time.sleep(min(seconds, self._cap, BUSY_POLL_SECONDS))
        else:
            time.sleep(min(seconds, self._cap))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _noting_replies(push_messages: Any, clock: _CappedTime) -> Any:
    """Flower's ``_push_messages`` (the node sends its ClientApp's reply), telling ``clock`` when it is done."""

    def push(*args: Any, **kwargs: Any) -> Any:
        try:
            return push_messages(*args, **kwargs)
        finally:
            clock.replied()

    return push


class _WarmSuperExec:
    """The ``subprocess`` module as the SuperNode's start-up sees it: its ``flower-superexec`` child becomes
    :mod:`privfed.runtime.flower.fastexec` (same arguments), whose ClientApp processes start warm."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(command: Any, *args: Any, **kwargs: Any) -> subprocess.Popen:  # noqa: N802 - the module's name
        if isinstance(command, list) and command and command[0] == "flower-superexec":
            command = [sys.executable, "-m", "privfed.runtime.flower.fastexec", *command[1:]]
        return subprocess.Popen(command, *args, **kwargs)


def main() -> None:
    cap = _poll_seconds()
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli import flower_supernode

    clock = _CappedTime(cap)
    start_client_internal.time = clock  # type: ignore[assignment]
    start_client_internal._push_messages = _noting_replies(start_client_internal._push_messages, clock)
    start_client_internal.subprocess = _WarmSuperExec()  # type: ignore[assignment]
    quicken_object_pulls(start_client_internal)  # a request whose objects the server is still pushing
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
