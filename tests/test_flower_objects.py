"""The loopback speed-ups that change Flower's timers (privfed.runtime.flower.objects, fastnode's sleeps): what they
pass to Flower, that Flower's own pull still delivers and still gives up, and that the switch turns them off. Fast:
no SuperLink, no processes, no timed assertions."""

from __future__ import annotations

import types

import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")

from flwr.supercore.constant import PULL_BACKOFF_CAP, PULL_MAX_TRIES_PER_OBJECT  # noqa: E402
from flwr.supercore.inflatable import inflatable_utils  # noqa: E402

from privfed.runtime.flower import fastnode, objects  # noqa: E402


def _recording() -> tuple[types.ModuleType, list[dict]]:
    calls: list[dict] = []

    def pull_objects(object_ids, pull_object_fn, **kwargs):  # Flower's signature
        calls.append(kwargs)
        return {oid: pull_object_fn(oid) for oid in object_ids}

    return types.SimpleNamespace(__name__="fake", pull_objects=pull_objects), calls


def test_short_backoff_same_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(objects.QUICK_PULLS_ENV, raising=False)
    module, calls = _recording()
    assert objects.quicken_object_pulls(module) == ["fake"]
    assert module.pull_objects(["a"], lambda oid: b"x") == {"a": b"x"}
    # Flower's defaults when the caller passes none; a caller's own values when they are shorter still
    module.pull_objects(["a"], lambda oid: b"x", initial_backoff=1, backoff_cap=10, max_tries_per_object=7)
    module.pull_objects(["a"], lambda oid: b"x", initial_backoff=0.001, backoff_cap=0.002, max_tries_per_object=None)
    first, second, third = calls
    assert first["initial_backoff"] == objects.INITIAL_BACKOFF and first["backoff_cap"] == objects.BACKOFF_CAP
    # as many seconds of patience at the short cap as Flower's tries at its own cap
    assert first["max_tries_per_object"] * objects.BACKOFF_CAP >= PULL_MAX_TRIES_PER_OBJECT * PULL_BACKOFF_CAP
    assert second["max_tries_per_object"] * objects.BACKOFF_CAP >= 7 * 10
    assert (third["initial_backoff"], third["backoff_cap"], third["max_tries_per_object"]) == (0.001, 0.002, None)
    assert objects.quicken_object_pulls(module) == []  # idempotent: wrapped once


def test_switch_off_leaves_flower_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(objects.QUICK_PULLS_ENV, "0")
    module, _ = _recording()
    original = module.pull_objects
    assert objects.quicken_object_pulls(module, "no.such.module") == []
    assert module.pull_objects is original


def test_flowers_pull_retries_soon_and_still_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Flower's real pull_objects: an object in flight arrives after a few "unavailable" answers; one that
    never arrives still ends in Flower's ObjectPullError once the tries are spent."""
    monkeypatch.delenv(objects.QUICK_PULLS_ENV, raising=False)
    pull = objects.quick_pull_objects(inflatable_utils.pull_objects)
    answers = {"a": 3}

    def in_flight(oid: str) -> bytes:
        if answers[oid] > 0:
            answers[oid] -= 1
            raise inflatable_utils.ObjectUnavailableError(oid)
        return b"content"

    assert pull(["a"], in_flight) == {"a": b"content"}
    assert answers["a"] == 0

    def never(oid: str) -> bytes:
        raise inflatable_utils.ObjectUnavailableError(oid)

    with pytest.raises(inflatable_utils.ObjectPullError):
        pull(["b"], never, max_tries_per_object=3, backoff_cap=0.05)


def test_node_caps_idle_poll_and_local_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(fastnode.time, "sleep", slept.append)
    capped = fastnode._CappedTime(0.2)
    capped.sleep(3)      # empty poll of the SuperLink: a request each time, capped at the poll setting
    capped.sleep(0.5)    # waiting for the ClientApp's reply in the node's own state: no request
    capped.sleep(0.001)  # never lengthened
    assert slept == [0.2, fastnode.LOCAL_WAIT_SECONDS, 0.001]
    assert capped.monotonic is fastnode.time.monotonic  # everything else is the time module's


def test_node_polls_sooner_only_just_after_a_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(fastnode.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(fastnode.time, "sleep", slept.append)
    capped = fastnode._CappedTime(0.2)
    pushed: list[str] = []

    def push_messages(**kwargs):  # Flower's _push_messages: sends the ClientApp's reply
        pushed.append("reply")
        raise RuntimeError("send failed")  # a failed send still ends the node's wait: the next phase is due

    with pytest.raises(RuntimeError):
        fastnode._noting_replies(push_messages, capped)(state=None)
    assert pushed == ["reply"]
    capped.sleep(3)                                   # just after the reply: the next request is due
    now[0] += fastnode.BUSY_WINDOW_SECONDS + 0.1
    capped.sleep(3)                                   # idle again: the configured poll
    assert slept == [fastnode.BUSY_POLL_SECONDS, 0.2]
    assert fastnode._CappedTime(0.02).sleep(3) is None and slept[-1] == 0.02  # a shorter setting is never lengthened


def test_clientapp_threads_setting() -> None:
    from privfed.runtime.flower import fastexec

    assert fastexec.threads_for("1") == 1 and fastexec.threads_for("4") == 4
    for raw in (None, "", "0", "-2", "two", "1.5"):
        assert fastexec.threads_for(raw) is None  # torch's own default then


def test_loopback_splits_cores_between_nodes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from privfed.runtime.flower.loopback import LoopbackDeployment

    monkeypatch.delenv("PRIVFED_CLIENTAPP_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert LoopbackDeployment(tmp_path, nodes=3).env()["PRIVFED_CLIENTAPP_THREADS"] == "2"
    assert LoopbackDeployment(tmp_path, nodes=16).env()["PRIVFED_CLIENTAPP_THREADS"] == "1"
    monkeypatch.setenv("PRIVFED_CLIENTAPP_THREADS", "5")  # a user's own setting wins
    assert LoopbackDeployment(tmp_path, nodes=3).env()["PRIVFED_CLIENTAPP_THREADS"] == "5"


def test_loopback_ports_lie_below_the_ephemeral_range_and_are_free() -> None:
    """A port from bind(0) lies in the ephemeral range, where a SuperNode's outgoing connection could take it
    before the server meant for it binds it ("address already in use"): loopback ports come from below it."""
    import socket

    from privfed.runtime.flower.loopback import _ephemeral_range, free_ports

    low, _ = _ephemeral_range()
    for count in (1, 4):
        base = free_ports(count)
        assert 1024 <= base and base + count <= low
        for port in range(base, base + count):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))  # every port of the block is free
