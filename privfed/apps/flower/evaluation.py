"""Federated evaluation over Flower, through the round's protection when it hides per-client figures.

Every node evaluates the global model on its own validation split and holds five sums: loss sum, loss units,
correct predictions, predictions, samples. How they reach the server depends on the round's protection, by the ONE
rule of :func:`privfed.threat.disclosure.reveals_client_figures` (the catalogue's ``update_hiding``):

* the protection shows every update to the server (``plaintext``, central ``dp``): each node answers an
  ``evaluate`` message with its sums in the clear (one message exchange), and the server adds them up;
* any other protection: the sums travel only inside a secure sum (:func:`evaluation_protection`): the round's own
  cryptographic protocol without its DP part (``secagg`` for ``secagg`` and ``secagg+dp``, ``ckks`` for ``ckks`` and
  ``ckks+dp``, ``paillier`` for ``paillier``, with the same dealt keys), or ``secagg`` where the round's aggregation
  is itself in the clear (``local-dp``, ``dp-sgd``: client-side noise hides updates, not evaluation sums). The
  protocol runs over the 5-value vector through the same driver and state machines as the training aggregation,
  as ``query.evaluate`` messages (their own ClientApp handler and node state, so training and evaluation machines
  never mix); the global model rides with the first phase's request, so it costs the protocol's phases and nothing
  more. The server learns the totals and the number of nodes in them, nothing per node.

Encoding: a node sends ``sums / EVAL_SCALE`` (the loss sum further divided by ``LOSS_BOUND``) with weight 1 into a
protocol instance with ``clip = 1`` and ``max_weight = 1`` (SecAgg with a 64-bit ring, Paillier with 60-bit slots,
for precision; CKKS keeps its approximate arithmetic: its bound, scaled back, is tens of units at most), so
``mean * total_weight * scale`` is the total. A node whose sums exceed those public bounds (more than
``EVAL_SCALE`` validation units, or a mean loss above ``LOSS_BOUND``) refuses with a MessageError naming the bound
and counts as not evaluated: never a clipped, silently wrong total. The decoded totals carry the protocol's declared
error bound scaled back (``evaluation_error_bound``).

Threat model: the totals are *not* differentially private. Under ``secagg+dp``, ``ckks+dp``, ``local-dp`` and
``dp-sgd`` the evaluation totals are exact sums of un-noised validation figures of the surviving nodes and are not
covered by the round's epsilon (the record says so in ``evaluation``); they reveal what a pooled validation loss and
accuracy reveal, plus the total validation-set size. The secure sum's own assumptions are the protocol's (SecAgg:
fewer than t colluding clients with the server; HE: no key holder colluding with the server). With fewer than the
protocol's minimum number of nodes evaluating, the secure sum aborts and the round records no metrics rather than
one node's figures. Plaintext and central-DP rounds keep the clear path: the server sees every update anyway.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from protocols.base import LEARNED_BY_SERVER, ClientUpdate
from protocols.errors import MessageError

__all__ = ["EVAL_KEYS", "EVAL_PHASE_TYPE", "EVAL_SCALE", "LOSS_BOUND", "SECURE_SUM_FALLBACK", "evaluation_protection",
           "evaluation_options", "encode_sums", "decode_totals", "metrics_from_totals", "disclosure_note"]

#: the five sums every node computes (privfed.apps.flower.training.node_evaluate)
EVAL_KEYS: tuple[str, ...] = ("loss_sum", "units", "correct", "predictions", "samples")
#: Flower message type of the evaluation secure sum's phases (ClientApp handler ``@app.query("evaluate")``)
EVAL_PHASE_TYPE = "query.evaluate"
#: public bound on one node's validation counts (units, predictions, samples) inside the secure sum
EVAL_SCALE = float(2**24)
#: public bound on a node's mean validation loss per unit inside the secure sum
LOSS_BOUND = 64.0
#: the secure sum used where the round's own aggregation is in the clear (client-side DP)
SECURE_SUM_FALLBACK = "secagg"
_SCALES = np.array([EVAL_SCALE * LOSS_BOUND, EVAL_SCALE, EVAL_SCALE, EVAL_SCALE, EVAL_SCALE])


def evaluation_protection(protection: str) -> str | None:
    """The protocol that carries a round's evaluation sums: None (in the clear) when the round's protection shows
    per-client figures to the server, else the round's own cryptographic protocol without its DP part, or
    :data:`SECURE_SUM_FALLBACK` when that protocol is in the clear (or the catalogue does not know the protection)."""
    from privfed.threat import catalogue
    from privfed.threat.disclosure import reveals_client_figures

    if reveals_client_figures(protection):
        return None
    entry = catalogue.CATALOGUE.get(str(protection))
    if entry is None or entry.update_hiding != catalogue.CRYPTOGRAPHIC:
        return SECURE_SUM_FALLBACK
    return entry.protocol


def evaluation_options(round_options: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The secure sum's options: the run's option table for ``name`` (graph, threshold, key sizes) with the
    evaluation's public bounds; DP and training options never apply (the family's base protocol takes none)."""
    options = {k: v for k, v in dict(round_options).items() if k not in ("client_noise", "noise", "dp")}
    options.update(max_weight=1.0, clip=1.0)
    if name == "secagg":  # 5 values: precision is free
        options["ring_bits"] = 64
    elif name in ("paillier", "paillier-per-value"):
        options["slot_bits"] = 60
    return options


def encode_sums(sums: Mapping[str, float]) -> ClientUpdate:
    """One node's sums as the secure sum's input (weight 1); raises MessageError beyond the public bounds."""
    try:
        values = np.array([float(sums[k]) for k in EVAL_KEYS], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise MessageError("evaluation sums are incomplete") from None
    if not np.isfinite(values).all() or (values[1:] < 0).any():
        raise MessageError("evaluation sums are not finite non-negative counts")
    scaled = values / _SCALES
    if (np.abs(scaled) > 1.0).any():
        raise MessageError(f"evaluation sums exceed the secure sum's public bounds ({EVAL_SCALE:g} validation units "
                           f"per node, mean loss {LOSS_BOUND:g}): this node sits the evaluation out")
    # float32 is the protocols' input type: counts up to 2**24 divided by a power of two stay exact; the loss sum
    # rounds at float32's 2**-24 relative precision (included in decode_totals' error bound)
    return ClientUpdate(scaled.astype(np.float32), 1.0)


def decode_totals(result: Any) -> tuple[dict[str, float], dict[str, float]]:
    """(totals, error bound of each total) from a secure sum's AggregateResult (weights are 1 each): the protocol's
    declared bound on the mean, scaled back, plus float32 rounding of the loss sum at encoding."""
    if result.learned_by != LEARNED_BY_SERVER:
        raise MessageError("the evaluation secure sum did not deliver its total to the server")
    mean = np.asarray(result.mean, dtype=np.float64)
    if mean.shape != (len(EVAL_KEYS),) or not np.isfinite(mean).all():
        raise MessageError("the evaluation secure sum returned a malformed total")
    count = float(result.total_weight)
    totals = mean * count * _SCALES
    bounds = float(result.error_bound) * count * _SCALES
    bounds[0] += 2.0**-24 * abs(float(totals[0]))
    return (dict(zip(EVAL_KEYS, (float(v) for v in totals))), dict(zip(EVAL_KEYS, (float(b) for b in bounds))))


def metrics_from_totals(totals: Mapping[str, float], evaluated_by: int) -> dict[str, Any]:
    """The round's metrics (pooled loss, accuracy, samples) from the nodes' totals — the same for both paths."""
    units, predictions = float(totals.get("units", 0.0)), float(totals.get("predictions", 0.0))
    metrics: dict[str, Any] = {"loss": float(totals["loss_sum"]) / units if units > 0.5 else math.nan,
                               "samples": int(round(float(totals.get("samples", 0.0)))), "evaluated_by": evaluated_by}
    if predictions > 0.5:
        metrics["accuracy"] = float(totals["correct"]) / predictions
    return metrics


def disclosure_note(protection: str) -> str:
    """What the round's evaluation revealed, recorded with its metrics."""
    carrier = evaluation_protection(protection)
    if carrier is None:
        return ("federated evaluation in the clear: each node's validation loss sum, correct count and sample count "
                "reach the server (the round's protection shows per-client figures anyway); only totals are recorded")
    from privfed.threat import catalogue

    entry = catalogue.CATALOGUE.get(str(protection))
    dp = " (not DP-noised: the round's epsilon does not cover them)" if entry is None or entry.has_dp else ""
    return (f"federated evaluation through {carrier}: the server learns only the totals of the nodes' validation "
            f"sums{dp}")
