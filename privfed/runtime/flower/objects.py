"""Flower's object pulls with a short first backoff: the 1-3 s stalls of a privfed phase on loopback.

Flower 1.42 moves a message in two steps: its metadata (with the tree of object ids) and then each object. A
receiver that gets the metadata before the sender finished pushing the objects is told "object unavailable" and
``flwr.supercore.inflatable.inflatable_utils.pull_objects`` retries with an exponential backoff that starts at 1 s
(jittered, doubling, capped at 10 s; no option or environment variable sets it). On loopback that race is the rule,
not the exception, at all three receivers of a privfed phase:

* the ClientApp pulls the request from its SuperNode while the SuperNode is still pulling it from the SuperLink
  (warm ClientApps start within ~0.1 s, so they are early more often than not);
* the SuperNode pulls the request from the SuperLink while the ServerApp is still pushing its objects;
* the ServerApp pulls a reply whose objects the SuperNode is still pushing.

Measured with a trace of ``bench_flower_rounds.py`` (one run, load ~1): 12 of the run's pulls waited 0.85-2.6 s
this way, one to three backoffs each; that is the "phase that stalls for 3-4 s now and then" of earlier figures.

:func:`quicken_object_pulls` replaces a module's ``pull_objects`` with the same function called with a backoff
starting at :data:`INITIAL_BACKOFF` and capped at :data:`BACKOFF_CAP` (tries scaled so that the patience — how long
a pull waits in total before it gives up — stays Flower's). Nothing else changes: same requests, same errors, same
objects; an object that is in flight is merely asked for again sooner (a small request, at most 1/``BACKOFF_CAP``
times a second per waiting object). ``PRIVFED_QUICK_PULLS=0`` leaves Flower's backoff alone.

Threat model: none of its own (timing of retries only; nothing read or sent changes).
"""

from __future__ import annotations

import functools
import importlib
import math
import os
from types import ModuleType
from typing import Any, Callable

__all__ = ["quicken_object_pulls", "quick_pull_objects", "INITIAL_BACKOFF", "BACKOFF_CAP", "QUICK_PULLS_ENV"]

#: first wait (seconds) after an "object unavailable" answer (Flower: 1 s)
INITIAL_BACKOFF = 0.01
#: longest wait between two tries of one object (Flower: 10 s)
BACKOFF_CAP = 0.05
QUICK_PULLS_ENV = "PRIVFED_QUICK_PULLS"
_MARK = "__privfed_quick_pulls__"


def quick_pull_objects(pull_objects: Callable[..., Any]) -> Callable[..., Any]:
    """``pull_objects`` (Flower's signature) with the short backoff and the same total patience."""
    if getattr(pull_objects, _MARK, False):
        return pull_objects
    from flwr.supercore.constant import PULL_BACKOFF_CAP, PULL_INITIAL_BACKOFF, PULL_MAX_TRIES_PER_OBJECT

    @functools.wraps(pull_objects)
    def pull(object_ids: Any, pull_object_fn: Any, **kwargs: Any) -> Any:
        cap = float(kwargs.get("backoff_cap", PULL_BACKOFF_CAP))
        tries = kwargs.get("max_tries_per_object", PULL_MAX_TRIES_PER_OBJECT)
        kwargs["initial_backoff"] = min(float(kwargs.get("initial_backoff", PULL_INITIAL_BACKOFF)), INITIAL_BACKOFF)
        kwargs["backoff_cap"] = min(cap, BACKOFF_CAP)
        if tries is not None:
            kwargs["max_tries_per_object"] = max(int(tries), math.ceil(int(tries) * cap / kwargs["backoff_cap"]))
        return pull_objects(object_ids, pull_object_fn, **kwargs)

    setattr(pull, _MARK, True)
    return pull


def quicken_object_pulls(*modules: ModuleType | str) -> list[str]:
    """Give each module's ``pull_objects`` (a module object or an importable name) the short backoff, in this
    process. Idempotent; returns the names of the modules changed (none when ``PRIVFED_QUICK_PULLS=0``, or for a
    name that does not import or has no ``pull_objects``)."""
    if os.environ.get(QUICK_PULLS_ENV, "1") == "0":
        return []
    changed = []
    for module in modules:
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except ImportError:
                continue
        original = getattr(module, "pull_objects", None)
        if original is None or getattr(original, _MARK, False):
            continue
        setattr(module, "pull_objects", quick_pull_objects(original))
        changed.append(module.__name__)
    return changed
