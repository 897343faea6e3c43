"""Threshold Paillier benchmark: what t-of-n decryption costs beside shared-key packed Paillier, in the same run.

Run (from the repository root, with the project installed)::

    nice python benchmarks/bench_threshold.py                 # 8 clients, T = 4, 3,000 params; writes results/threshold.md
    nice python benchmarks/bench_threshold.py --params 100000 --clients 8 --threshold 4

1. **Key dealing**: phe's key generation (the shared-key authority) against the threshold dealer (two safe primes,
   Shamir shares of d, verification keys), same key length.
2. **Encode speed**: phe's per-value encryption (one ciphertext per float) timed on ``--sample`` values and
   extrapolated linearly, against the packed encode of the full vector under the threshold key (public key only:
   r^n precomputed in setup) and under the shared key (CRT pool from the factors); ratios printed.
3. **Decrypt primitives** on the round's ciphertext count: one key holder's partial decryption and proof seconds,
   the server's proof check per holder, and the combine seconds for T partials (shared key: one full decryption).
4. **One round each** through ``privfed.runtime.local.run_round``: bytes per phase (per client, mean over the clients
   that completed), client / server seconds, measured max |error| against the declared bound.

All figures are wall-clock on whatever machine runs this; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from privfed.bench.aggregation import MAX_WEIGHT, synthetic_updates
from privfed.runtime.local import run_round
from protocols import registry
from protocols.encoding import weighted_vector
from protocols.paillier import PER_VALUE_PRECISION, PackedPaillierProtocol, _join, _split_ciphertexts
from protocols.paillier_keys import PaillierAuthority
from protocols.threshold_paillier import ThresholdPaillierAuthority, ThresholdPaillierProtocol
from protocols.threshold_paillier_keys import combine, partial_decrypt, prove, verify

RESULTS = Path(__file__).parent / "results" / "threshold.md"


def _timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def measure(params: int, clients: int, threshold: int, sample: int, key_bits: int) -> dict[str, Any]:
    holders = tuple(range(clients))
    shared, deal_shared = _timed(lambda: PaillierAuthority(key_bits))
    # keep_shares: the same dealt key serves the primitive timings below and the round (dealt once, timed once)
    dealer, deal_threshold = _timed(lambda: ThresholdPaillierAuthority(key_bits, holders, threshold,
                                                                       keep_shares=True))
    shared_keys = shared.client_bundle()
    bundles = {c: dealer.client_bundle(c) for c in holders}
    vector = weighted_vector(np.random.default_rng(0).uniform(-1, 1, params).astype(np.float32), 37.0, MAX_WEIGHT)

    started = time.perf_counter()
    for value in vector[:sample]:
        shared_keys.public_key.encrypt(float(value), precision=PER_VALUE_PRECISION)
    per_value = (time.perf_counter() - started) / sample * vector.size

    def packed(protocol, keys):
        codec = protocol.client_codec(keys, params, clients)
        return _timed(lambda: (codec.precompute(), codec.encrypt(vector))[1])

    thr_protocol = ThresholdPaillierProtocol(threshold=threshold, max_weight=MAX_WEIGHT, key_bits=key_bits)
    sk_protocol = PackedPaillierProtocol(max_weight=MAX_WEIGHT, key_bits=key_bits)
    thr_ct, thr_encode = packed(thr_protocol, bundles[0])
    _, sk_encode = packed(sk_protocol, shared_keys)

    public = dealer.public
    width = (public.n_square.bit_length() + 7) // 8
    cts = [int(c) for c in _split_ciphertexts(thr_ct, width, public.n_square)]
    context = b"bench"
    share = bundles[0].share
    partials, t_partial = _timed(lambda: partial_decrypt(share, cts))
    proof, t_prove = _timed(lambda: prove(share, cts, partials, context))
    _, t_verify = _timed(lambda: verify(public, share.index, cts, partials, proof, context))
    chosen = {bundles[c].share.index: partial_decrypt(bundles[c].share, cts) for c in holders[:threshold]}
    _, t_combine = _timed(lambda: combine(public, chosen))
    shared_cts = [int(c) for c in _split_ciphertexts(packed(sk_protocol, shared_keys)[0], width,
                                                     int(shared_keys.n_square))]
    _, t_full = _timed(lambda: [shared_keys.decrypt_raw(c) for c in shared_cts])

    updates = synthetic_updates(clients, params, seed=0)
    rounds = {}
    for label, options in (("shared key", {"authority": shared}),
                           (f"threshold T={threshold}", {"decryption": "threshold", "threshold": threshold,
                                                         "authority": dealer, "dealer_keeps_shares": True})):
        # keys dealt above (timed there), so the round's server seconds hold no key generation
        protocol = registry.create("paillier", {"max_weight": MAX_WEIGHT, "key_bits": key_bits, **options})
        report = run_round(protocol, 1, updates, transcript=False, client_states={})
        summary = report.summary()
        exact = np.average(np.stack([u.vector.astype(np.float64) for u in updates.values()]), axis=0,
                           weights=[u.weight for u in updates.values()])
        rounds[label] = {**summary, "max_abs_error": float(np.max(np.abs(report.aggregate - exact)))}
    return {"params": params, "clients": clients, "threshold": threshold, "key_bits": key_bits,
            "ciphertexts": len(cts), "deal_shared_s": deal_shared, "deal_threshold_s": deal_threshold,
            "per_value_s": per_value, "sample": sample, "thr_encode_s": thr_encode, "sk_encode_s": sk_encode,
            "partial_s": t_partial, "prove_s": t_prove, "verify_s": t_verify, "combine_s": t_combine,
            "full_decrypt_s": t_full, "partial_bytes": len(_join(partials, width)), "proof_bytes": len(proof),
            "rounds": rounds}


def render(r: dict[str, Any]) -> str:
    f32 = 4 * r["params"]
    lines = [f"# Threshold Paillier vs shared-key packed Paillier ({r['params']:,} params, {r['clients']} clients, "
             f"T={r['threshold']}, {r['key_bits']}-bit n)", "",
             f"Machine: {platform.platform()}, Python {sys.version.split()[0]}. One run; wall-clock seconds.", "",
             "| figure | shared key | threshold | ratio |", "|---|---|---|---|",
             f"| key dealing s | {r['deal_shared_s']:.2f} | {r['deal_threshold_s']:.2f} | "
             f"{r['deal_threshold_s'] / r['deal_shared_s']:.1f}x |",
             f"| packed encode s (precompute + online) | {r['sk_encode_s']:.3f} | {r['thr_encode_s']:.3f} | "
             f"{r['thr_encode_s'] / r['sk_encode_s']:.1f}x |",
             f"| phe per-value encode s (extrapolated from {r['sample']}) | {r['per_value_s']:.2f} | "
             f"{r['per_value_s']:.2f} | |",
             f"| packed speed-up over phe per value | {r['per_value_s'] / r['sk_encode_s']:.0f}x | "
             f"{r['per_value_s'] / r['thr_encode_s']:.0f}x | |",
             f"| decrypt s ({r['ciphertexts']} ciphertexts): full key / one holder's partial | "
             f"{r['full_decrypt_s']:.3f} | {r['partial_s']:.3f} | |",
             f"| one holder's proof s / server's check s per holder | | {r['prove_s']:.3f} / {r['verify_s']:.3f} | |",
             f"| combine s (T partials) | | {r['combine_s']:.3f} | |",
             f"| partial + proof bytes per key holder | | {r['partial_bytes']:,} + {r['proof_bytes']:,} "
             f"({(r['partial_bytes'] + r['proof_bytes']) / f32:.2f}x float32) | |", "",
             "One round each (bytes per client: mean over the clients that completed the round):", "",
             "| round | upload B per client by phase | x float32 (upload phase) | x float32 (all phases) | "
             "download B | client s | server s | max abs error | bound |", "|---|---|---|---|---|---|---|---|---|"]
    for label, s in r["rounds"].items():
        k = max(s["survivors"], 1)
        phases = ", ".join(f"{p}: {v / k:,.0f}" for p, v in s["upload_bytes_by_phase"].items())
        lines.append(f"| {label} | {phases} | {s['upload_bytes_by_phase'].get('upload', 0) / k / f32:.2f} | "
                     f"{s['upload_bytes_per_client'] / f32:.2f} | {s['download_bytes_per_client']:,.0f} | "
                     f"{s['client_seconds']:.2f} | {s['server_seconds']:.2f} | {s['max_abs_error']:.2e} | "
                     f"{s['error_bound']:.2e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threshold", type=int, default=4)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    text = render(measure(args.params, args.clients, args.threshold, args.sample, args.key_bits))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
