"""The frame of the simulated malicious server: the hijacked protocol and the attacker wrapping the honest server.

Threat model: this is the attacker, not a protection. It forwards to the protocol's honest server machine, rewrites
what that machine sends and intercepts what it receives, as a deviating server could; it never reads a client's
memory.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from protocols.base import AggregateResult, Outgoing, ServerStateMachine
from protocols.errors import MessageError, PrivfedError, ProtocolAbort
from protocols.wire import Message, encode

__all__ = ["Hijacked", "Attacker"]


class Hijacked:
    """The protocol with its server machine replaced by an attacker wrapping the honest one."""

    def __init__(self, inner: Any, make: Callable[[Any, int], ServerStateMachine]) -> None:
        self.inner, self._make = inner, make

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def server(self, round_id: int, client_ids: Any, dim: int) -> ServerStateMachine:
        machine = self.inner.server(round_id, client_ids, dim)
        if hasattr(self.inner, "placement"):  # a DP placement: attack the inner protocol's server machine
            machine.inner = self._make(machine.inner, round_id)
            return machine
        return self._make(machine, round_id)

    def client(self, *args: Any) -> Any:
        return self.inner.client(*args)


class Attacker(ServerStateMachine):
    """Forwards to the honest machine; subclasses rewrite requests (``rewrite``) and intercept replies."""

    def __init__(self, inner: Any, round_id: int, target: int, memory: dict) -> None:
        self.inner, self.round_id, self.target, self.memory = inner, round_id, target, memory
        self.phase = ""
        self.private: set[int] = set()  # clients whose replies this phase the attacker keeps to itself
        self.recovered: np.ndarray | None = None

    def start(self) -> Outgoing:
        return self._out(self.inner.start())

    def advance(self) -> Outgoing | AggregateResult:
        try:
            step = self.inner.advance()
        except MessageError as exc:  # the honest machine cannot finish from the state the attack left
            raise ProtocolAbort(f"the attacked round cannot finish: {exc}") from None
        return self._out(step) if isinstance(step, Outgoing) else step

    def _out(self, out: Outgoing) -> Outgoing:
        self.phase, self.private = out.phase, set()
        return Outgoing(out.phase, self.rewrite(out.phase, dict(out.messages)))

    def receive(self, sender: int, payload: bytes) -> None:
        try:
            self.intercept(self.phase, sender, payload)
        except PrivfedError:
            pass  # the attack failed on this message; the honest machine still judges it below
        if sender not in self.private:
            self.inner.receive(sender, payload)

    def rewrite(self, phase: str, messages: dict[int, bytes]) -> dict[int, bytes]:
        return messages

    def intercept(self, phase: str, sender: int, payload: bytes) -> None:
        return None

    def _request(self, kind: str, fields: Mapping[str, Any]) -> bytes:
        return encode(Message(self.inner.protocol.name, kind, self.round_id, -1, dict(fields)))


