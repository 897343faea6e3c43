"""One vertical-FL session in-process: PSI alignment, split training, evaluation, with exact bytes and seconds.

Every message between the label party and a feature party crosses as the bytes the state machines of
:mod:`protocols.vertical` produced (and, under ``secure-sum``, the embeddings cross through privfed's registered
SecAgg protocol via :func:`privfed.runtime.local.run_round`), so the byte counts are the real ones, per party and per
phase. Each party's compute is timed separately. A feature party can be made to drop from a step on (``drops``) or
its messages rewritten on the wire (``tamper``): the session then aborts with the reason — vertical training cannot
go on without a party's features, and it never trains on rows that every party has not aligned identically.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from protocols import registry
from protocols.csprng import CSPRNG
from protocols.errors import MessageError, PrivfedError, ProtocolAbort
from protocols.vertical import FeatureParty, LabelDP, LabelParty, get as get_protection
from protocols.wire import peek_header
from privfed.runtime.local import TranscriptKey, run_round, transcript_entry

from .config import VerticalConfig
from .data import PartyData, load_party
from .metrics import metrics
from .models import TopModel, TorchBottom

__all__ = ["run_vertical", "Tamper", "VerticalAbort"]

Tamper = Callable[[str, str, str, bytes], "bytes | None"]  # (kind, sender, recipient, payload) -> payload


class VerticalAbort(PrivfedError):
    """The session stopped before finishing; the reason names the party and the step."""


@dataclass
class _Books:
    sent: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    received: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def message(self, phase: str, sender: str, recipient: str, size: int) -> None:
        self.sent[sender][phase] += size
        self.received[recipient][phase] += size

    def timed(self, party: str, fn: Callable[..., Any], *args: Any) -> Any:
        clock = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[party] += time.perf_counter() - clock


class _Session:
    def __init__(self, cfg: VerticalConfig, drops: Mapping[str, int], tamper: Tamper | None) -> None:
        self.cfg, self.drops, self.tamper = cfg, dict(drops), tamper
        self.protection = get_protection(cfg.protection)
        self.books = _Books()
        self.transcript: list[Any] = []
        self.transcript_key = TranscriptKey()  # keyed digests: a shared session directory fingerprints no data
        self.label_name = cfg.label_party
        self.names = [p.name for p in cfg.feature_parties]
        self.step = 0
        self.label_dp = (LabelDP(cfg.noise_multiplier, cfg.clip, cfg.delta, cut_share=cfg.cut_share)
                         if self.protection.label_dp else None)
        self.rng = CSPRNG.from_os() if self.label_dp else None

    # --- transport -----------------------------------------------------------------------------------------
    def _wire(self, sender: str, recipient: str, phase: str, payload: bytes) -> bytes | None:
        if self.tamper is not None:
            try:
                kind = peek_header(payload)[1]
            except MessageError:
                kind = "<malformed>"
            payload = self.tamper(kind, sender, recipient, payload)
            if payload is None:
                return None
        self.books.message(phase, sender, recipient, len(payload))
        self.transcript.append(transcript_entry(phase, sender, recipient, payload, self.transcript_key))
        return payload

    def _exchange(self, phase: str, requests: Mapping[int, bytes]) -> dict[int, bytes]:
        """Deliver requests to feature parties; collect replies (parties that dropped get and send nothing)."""
        replies: dict[int, bytes] = {}
        for k, payload in requests.items():
            name = self.names[k]
            if name in self.drops and self.step >= self.drops[name]:
                raise VerticalAbort(f"party {name!r} dropped at step {self.step} (phase {phase}): vertical training "
                                    "cannot go on without its features; session aborted")
            delivered = self._wire(self.label_name, name, phase, payload)
            if delivered is None:
                raise VerticalAbort(f"request to party {name!r} lost at step {self.step} (phase {phase}); aborted")
            try:
                reply = self.books.timed(name, self.feature[k].handle, delivered)
            except PrivfedError as exc:
                raise VerticalAbort(f"party {name!r} refused at step {self.step} (phase {phase}): {exc}") from None
            if reply is not None:
                reply = self._wire(name, self.label_name, phase, reply)
                if reply is None:
                    raise VerticalAbort(f"reply of party {name!r} lost at step {self.step} (phase {phase}); aborted")
                replies[k] = reply
        return replies

    def _label(self, what: str, k: int, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self.books.timed(self.label_name, fn, *args)
        except PrivfedError as exc:
            raise VerticalAbort(f"label party rejected {what} of party {self.names[k]!r} at step {self.step}: "
                                f"{exc}") from None

    # --- phases --------------------------------------------------------------------------------------------
    def load(self) -> None:
        cfg = self.cfg
        self.data: dict[str, PartyData] = {}
        for p in cfg.parties:
            self.data[p.name] = self.books.timed(p.name, lambda p=p: load_party(
                p.name, p.path, id_column=cfg.id_column, time_column=cfg.time_column, label_column=cfg.label_column,
                is_label_party=p.name == cfg.label_party, missing=cfg.missing, task=cfg.task))
        make = lambda name, i: TorchBottom(self.data[name], hidden=cfg.hidden, embedding=cfg.embedding,  # noqa: E731
                                           cell=cfg.cell, lr=cfg.lr, seed=cfg.seed + 101 * (i + 1))
        self.feature = [self.books.timed(n, lambda n=n, i=i: FeatureParty(i, self.data[n].ids, make(n, i)))
                        for i, n in enumerate(self.names)]
        label_data = self.data[self.label_name]
        self.own = make(self.label_name, len(self.names)) if label_data.columns else None
        self.coordinator: LabelParty = self.books.timed(self.label_name, lambda: LabelParty(
            label_data.ids, len(self.names), self.protection.combine, [cfg.embedding] * len(self.names)))

    def align(self) -> None:
        lp = self.coordinator
        replies = self._exchange("psi", self.books.timed(self.label_name, lp.psi_requests))
        for k in range(len(self.names)):
            if k not in replies:
                raise VerticalAbort(f"party {self.names[k]!r} did not answer the PSI; aborted")
            self._label("the PSI reply", k, lp.receive_psi, k, replies[k])
        try:
            finish = self.books.timed(self.label_name, lp.finish_psi)
        except ProtocolAbort as exc:
            raise VerticalAbort(str(exc)) from None
        for k, reply in self._exchange("psi", finish).items():
            self._label("the alignment", k, lp.receive_aligned, k, reply)
        if not lp.ready:
            raise VerticalAbort("not every feature party confirmed the alignment; aborted")
        if self.own is not None:
            self.own.align(lp.aligned)
        labels = self.data[self.label_name]
        self.y = labels.labels[labels.rows_for(lp.aligned)]

    def _embeddings(self, rows: np.ndarray, train: bool) -> np.ndarray:
        self.step += 1
        lp, batch = self.coordinator, rows.size
        replies = self._exchange("forward", self.books.timed(self.label_name, lp.forward_requests, self.step,
                                                             rows, train))
        parts = []
        if self.own is not None:
            parts.append(self.books.timed(self.label_name, self.own.embed, rows, train))
        if self.protection.combine == "concat":
            for k in range(len(self.names)):
                if k not in replies:
                    raise VerticalAbort(f"party {self.names[k]!r} sent no embedding at step {self.step}; aborted")
                parts.append(self._label("the embedding", k, lp.receive_embedding, k, self.step, batch, replies[k]))
        else:
            parts.append(self._secure_sum(rows.size))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _secure_sum(self, batch: int) -> np.ndarray:
        protocol = registry.create("secagg", {"clip": 1.0, "max_weight": 1.0, "threshold": len(self.names)})
        updates = {k: self.books.timed(self.names[k], self.feature[k].secure_sum_input, self.step)
                   for k in range(len(self.names))}
        report = run_round(protocol, self.step, updates, transcript=False)
        for k, name in enumerate(self.names):
            self.books.message("secure-sum", name, self.label_name, report.upload_total(k))
            self.books.message("secure-sum", self.label_name, name, report.download_total(k))
            self.books.seconds[name] += report.client_seconds.get(k, 0.0)
        self.books.seconds[self.label_name] += report.server_seconds
        if report.aggregate is None:
            raise VerticalAbort(f"secure sum failed at step {self.step}: {report.aborted}")
        # SecAgg delivers the weighted mean of weight-1 inputs: times the count it is the sum
        total = report.aggregate * len(report.survivors)
        try:
            return self.coordinator.check_sum(total, batch, report.survivors)
        except PrivfedError as exc:
            raise VerticalAbort(str(exc)) from None

    def train_step(self, rows: np.ndarray) -> float:
        z = self._embeddings(rows, train=True)
        y = self.y[rows]
        if self.label_dp is None:
            loss, gz = self.books.timed(self.label_name, self.top.step, z, y)
        else:
            loss, gz = self.books.timed(self.label_name, self._private_step, z, y)
        offset = 0
        if self.own is not None:
            self.books.timed(self.label_name, self.own.backward, gz[:, :self.cfg.embedding])
            offset = self.cfg.embedding
        d = self.cfg.embedding
        if self.protection.combine == "concat":
            grads = {k: gz[:, offset + k * d: offset + (k + 1) * d] for k in range(len(self.names))}
        else:
            grads = {k: gz[:, offset:offset + d] for k in range(len(self.names))}
        self._exchange("gradient", self.books.timed(self.label_name, self.coordinator.gradient_messages, self.step,
                                                    grads))
        return loss

    def _private_step(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        assert self.label_dp is not None and self.rng is not None
        loss, joint = self.top.per_example(z, y)
        noisy_params, noisy_rows, _ = self.label_dp.release(joint, self.top.n_params, self.rng)
        self.top.apply_noisy_sum(noisy_params, len(y))
        return loss, (noisy_rows / len(y)).astype(np.float32)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.load()
        before = dict(self.books.seconds)
        self.align()
        self.psi_seconds = {name: self.books.seconds[name] - before.get(name, 0.0)
                            for name in [self.label_name, *self.names]}
        n = len(self.coordinator.aligned)
        order = np.random.default_rng(cfg.seed).permutation(n)  # experiment seed: data split and shuffles only
        n_test = max(1, int(round(cfg.test_fraction * n)))
        if n - n_test < 2:
            raise VerticalAbort(f"only {n} aligned entities: too few to train and test")
        test, train = np.sort(order[:n_test]), order[n_test:]
        inputs = cfg.embedding * ((self.own is not None) + (len(self.names) if self.protection.combine == "concat"
                                                            else 1))
        outputs = len(self.data[self.label_name].classes) if cfg.task == "classification" else 1
        self.top = TopModel(inputs, outputs, cfg.task, hidden=cfg.top_hidden, lr=cfg.lr, seed=cfg.seed,
                            private_lr=cfg.dp_lr if self.label_dp is not None else None)
        shuffler = np.random.default_rng(cfg.seed + 1)
        history = []
        for epoch in range(1, cfg.epochs + 1):
            perm = shuffler.permutation(train)
            losses = [self.train_step(np.sort(perm[i:i + cfg.batch_size]))
                      for i in range(0, len(perm), cfg.batch_size)]
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), **self.evaluate(test)})
        self._exchange("stop", self.coordinator.stop_messages(self.step + 1, "training finished"))
        return {"history": history, "train_size": int(train.size), "test_size": int(test.size),
                "baseline": metrics(cfg.task, self._baseline(train, test), self.y[test], outputs),
                "final_metrics": {k: v for k, v in history[-1].items() if k not in ("epoch", "train_loss")}}

    def evaluate(self, test: np.ndarray) -> dict[str, float]:
        z = self._embeddings(test, train=False)
        outputs = len(self.data[self.label_name].classes) if self.cfg.task == "classification" else 1
        return metrics(self.cfg.task, self.books.timed(self.label_name, self.top.predict, z), self.y[test], outputs)

    def _baseline(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        if self.cfg.task == "classification":
            majority = np.bincount(self.y[train]).argmax()
            return np.full(test.size, majority)
        return np.full(test.size, float(self.y[train].mean()))


def run_vertical(cfg: VerticalConfig, *, drops: Mapping[str, int] | None = None,
                 tamper: Tamper | None = None, transcript: list[Any] | None = None) -> dict[str, Any]:
    """Run a session; the summary (``status`` 'completed' or 'aborted' with ``aborted`` naming why).

    ``transcript``, when given, receives one :class:`~privfed.runtime.local.TranscriptEntry` per delivered message
    (the SecAgg rounds' own messages are counted in the bytes but not listed)."""
    started = time.perf_counter()
    session = _Session(cfg, drops or {}, tamper)
    summary: dict[str, Any] = {"protection": cfg.protection, "status": "completed", "aborted": None,
                               "final_metrics": None}
    try:
        summary.update(session.run())
    except VerticalAbort as exc:
        summary.update(status="aborted", aborted=str(exc))
    lp = getattr(session, "coordinator", None)
    summary["intersection_size"] = len(lp.aligned) if lp is not None else 0
    if lp is not None:
        summary["pairwise_intersections"] = {session.names[k]: v for k, v in lp.pairwise_sizes.items()}
        summary["set_sizes"] = {session.label_name: len(lp.ids),
                                **{session.names[k]: v for k, v in lp.their_set_sizes.items()}}
    summary["steps"] = session.step
    summary["psi"] = {"seconds": getattr(session, "psi_seconds", None),
                      "bytes_sent": {name: session.books.sent[name].get("psi", 0) for name in
                                     [session.label_name, *session.names]}}
    summary["cut_layer"] = next(row for row in _catalogue() if row["protection"] == cfg.protection)
    if session.label_dp is not None:
        summary["label_dp"] = session.label_dp.describe(cfg.epochs)
        summary["epsilon"] = summary["label_dp"]["epsilon"]
    else:
        summary["epsilon"] = None
    summary["parties"] = {
        p.name: {"role": "label" if p.name == cfg.label_party else "feature",
                 "bytes_sent": sum(session.books.sent[p.name].values()),
                 "bytes_received": sum(session.books.received[p.name].values()),
                 "bytes_sent_by_phase": dict(session.books.sent[p.name]),
                 "seconds": session.books.seconds[p.name]}
        for p in cfg.parties}
    if transcript is not None:
        transcript.extend(session.transcript)
    summary["seconds_total"] = time.perf_counter() - started
    summary["config"] = cfg.describe()
    return summary


def _catalogue() -> list[dict[str, Any]]:
    from protocols.vertical import table
    return table()
