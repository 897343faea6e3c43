"""Differential privacy in privfed, end to end in one aggregation loop (no model training; runs in seconds).

1. plan: the noise multiplier that keeps epsilon <= 8 at delta 1e-5 over 20 rounds with client sampling rate 0.1;
2. run 20 rounds of central DP-FedAvg (``dp``) and distributed DP under secure aggregation (``secagg+dp``, one
   client dropping out in round 3) on synthetic updates, recording each round's ``dp_events`` in a ledger;
3. save the ledger as JSON, load it back and re-derive the same epsilon (PLD and RDP).

Run: ``python examples/dp_run.py`` (needs the ``dp`` extra: dp-accounting). For training runs use
``privfed run -c plan=dp`` (or ``dp-sgd``, ``secagg+dp``, ``local-dp``): epsilon per round lands in rounds.jsonl.
"""

from __future__ import annotations

import numpy as np

from privfed.runtime.local import run_round
from protocols import registry
from protocols.base import ClientUpdate
from protocols.dp.accounting import epsilon_for, noise_multiplier_for
from protocols.dp.ledger import PrivacyLedger

ROUNDS, CLIENTS, DIM, DELTA, RATE = 20, 8, 1000, 1e-5, 0.1


def synthetic(seed: int) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)  # example data only; every noise sample comes from the OS-keyed CSPRNG
    return {c: ClientUpdate(rng.normal(0.01, 0.02, DIM).astype(np.float32), 1.0) for c in range(CLIENTS)}


def main() -> None:
    z = noise_multiplier_for(8.0, RATE, ROUNDS, DELTA, "rdp")
    print(f"noise multiplier for epsilon <= 8 over {ROUNDS} rounds at q = {RATE}: z = {z:.3f} (RDP)")
    for name in ("dp", "secagg+dp"):
        # sample_rate declares Poisson client sampling done by the caller (here we only simulate its accounting)
        protocol = registry.create(name, {"max_weight": 1.0, "clip": 1.0, "noise_multiplier": z, "clip_norm": 0.5,
                                          "sample_rate": RATE, "expected_clients": CLIENTS})
        ledger = PrivacyLedger()
        errors = []
        for r in range(1, ROUNDS + 1):
            updates = synthetic(r)
            drops = {0: "before-upload"} if (name == "secagg+dp" and r == 3) else {}
            result = run_round(protocol, r, updates, drops=drops, transcript=False).result
            ledger.record(r, result.info["dp_events"])
            exact = np.mean([u.vector for u in updates.values()], axis=0)
            errors.append(float(np.std(result.mean - exact)))
        saved = ledger.to_json()
        again = PrivacyLedger.from_json(saved)
        print(f"{name:10s} noise std on the mean {result.info['dp_noise_std']:.4f} (measured {np.mean(errors):.4f}); "
              f"epsilon after {ROUNDS} rounds against model users: PLD {again.epsilon(DELTA):.3f}, RDP "
              f"{again.epsilon(DELTA, 'rdp'):.3f}; against the server: {again.epsilon(DELTA, observer='server'):.3f}"
              f" (re-derived from {len(saved)} bytes of ledger JSON)")
    print(f"for comparison, {ROUNDS} rounds at z = {z:.3f}, q = {RATE}: PLD epsilon "
          f"{epsilon_for(z, RATE, ROUNDS, DELTA):.3f}")


if __name__ == "__main__":
    main()
