"""HE aggregation benchmark: packed vs per-value Paillier encode, and the CKKS / Paillier cost table.

Run (from the repository root, with the project installed)::

    nice python benchmarks/bench_he.py                     # prints everything, writes benchmarks/results/he.md
    nice python benchmarks/bench_he.py --quick             # 100k only, no 1M rows (minutes, not tens of minutes)

1. **Encode speed** (checklist items 9-11). phe's per-value encryption (``PaillierPublicKey.encrypt`` of one float,
   one ciphertext each) is timed on a sample of ``--sample`` values and **extrapolated** linearly to the full
   vector (it is exactly linear: one independent encryption per value); privfed's packed client encode of the full
   vector is timed in the same run, randomness precomputation included, and the ratio printed.
2. **Cost table** at 100k and 1M parameters: one aggregation through ``privfed.bench.aggregation`` (the same code as
   ``privfed bench``): upload bytes per client (and x float32), client seconds (all client compute, precomputation
   included), server seconds, the key holder's decrypt seconds, measured max |error| and the declared bound.

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

from privfed.bench.aggregation import BenchSpec, bench_aggregation
from protocols.encoding import weighted_vector
from protocols.paillier import PER_VALUE_PRECISION, PackedPaillierProtocol
from protocols.paillier_keys import PaillierAuthority

RESULTS = Path(__file__).parent / "results" / "he.md"


def encode_speed(params: int, clients: int, sample: int) -> dict[str, Any]:
    authority = PaillierAuthority(2048)
    keys = authority.client_bundle()
    rng = np.random.default_rng(0)  # benchmark data only
    x = rng.uniform(-1, 1, params).astype(np.float32)
    vector = weighted_vector(x, 37.0, 100.0)

    public = keys.public_key
    started = time.perf_counter()
    for value in vector[:sample]:
        public.encrypt(float(value), precision=PER_VALUE_PRECISION)
    per_value = (time.perf_counter() - started) / sample

    protocol = PackedPaillierProtocol(authority=authority, max_weight=100.0)
    started = time.perf_counter()
    codec = protocol.client_codec(keys, params, clients)
    codec.precompute()
    precompute = time.perf_counter() - started
    started = time.perf_counter()
    ciphertexts = codec.encrypt(vector)
    online = time.perf_counter() - started
    packed = precompute + online
    return {"params": params, "sample": sample, "per_value_seconds_each": per_value,
            "per_value_seconds_extrapolated": per_value * vector.size,
            "per_value_bytes": vector.size * 512, "packed_seconds": packed, "packed_precompute_seconds": precompute,
            "packed_online_seconds": online, "packed_bytes": len(ciphertexts),
            "ratio": per_value * vector.size / packed}


ROWS = (
    ("ckks (n4096, default)", "ckks", {}),
    ("ckks (n8192 [60,40,40])", "ckks", {"parameter_set": "n8192"}),
    ("paillier (2048, packed)", "paillier", {}),
)


def table(sizes: list[tuple[int, int]], with_n8192: bool) -> list[dict[str, Any]]:
    rows = []
    for params, clients in sizes:
        for label, protection, options in ROWS:
            if "n8192" in label and not with_n8192:
                continue
            print(f"  {label}: {clients} clients x {params:,} params ...", file=sys.stderr, flush=True)
            record = bench_aggregation(BenchSpec(protection, clients, params, options=options))
            info = (record.get("result") or {}).get("info", {})
            rows.append({"label": label, "params": params, "clients": clients,
                         "upload": record["upload_bytes_per_client"], "ratio": record["upload_ratio_vs_float32"],
                         "client_s": record["client_seconds"], "server_s": record["server_seconds"],
                         "decrypt_s": info.get("decrypt_seconds"), "error": record["max_abs_error"],
                         "bound": record["error_bound"], "aborted": record["aborted"],
                         "online_s": info.get("client_online_seconds_mean"),
                         "precompute_s": info.get("client_precompute_seconds_mean")})
    return rows


def render(speed: dict[str, Any], rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# HE aggregation: measured costs",
        "",
        f"Reproduce: `{command}`",
        "",
        f"Machine: {platform.machine()}, {platform.python_version()}, {platform.system()}; measured "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Shared and noisy when this was written: "
        "treat seconds as indicative, bytes and errors as exact.",
        "",
        f"## Paillier client encode, {speed['params']:,} params (2048-bit n)",
        "",
        "| method | seconds | bytes |",
        "|---|---:|---:|",
        f"| phe per-value (timed on {speed['sample']} values, extrapolated x{speed['params'] + 1:,}) | "
        f"{speed['per_value_seconds_extrapolated']:.1f} ({1e3 * speed['per_value_seconds_each']:.2f} ms/value) | "
        f"{speed['per_value_bytes']:,} |",
        f"| privfed packed, all client compute | {speed['packed_seconds']:.2f} | {speed['packed_bytes']:,} |",
        f"| &nbsp;&nbsp;of which r^n pool (setup phase) | {speed['packed_precompute_seconds']:.2f} | |",
        f"| &nbsp;&nbsp;of which online (encode + pack + multiply) | {speed['packed_online_seconds']:.2f} | |",
        "",
        f"**Packed is {speed['ratio']:.0f}x faster than per-value** (same run, same key).",
        "",
        "## One aggregation (privfed bench code path)",
        "",
        "| protection | params | clients | upload B/client | x float32 | client s | server s | decrypt s | "
        "max abs error | error bound |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["aborted"]:
            lines.append(f"| {r['label']} | {r['params']:,} | {r['clients']} | aborted: {r['aborted']} |||||||")
            continue
        decrypt = "-" if r["decrypt_s"] is None else f"{r['decrypt_s']:.2f}"
        lines.append(f"| {r['label']} | {r['params']:,} | {r['clients']} | {r['upload']:,.0f} | {r['ratio']:.2f} | "
                     f"{r['client_s']:.2f} | {r['server_s']:.2f} | {decrypt} | {r['error']:.2e} | "
                     f"{r['bound']:.2e} |")
    lines += [
        "",
        "Client seconds are the mean over survivors of all client compute (setup precomputation included; the "
        "decrypting key holder's decryption is in its own client seconds and shown separately as decrypt s). "
        "Upload includes every phase (setup acknowledgement, ciphertexts, and the key holder's release of the "
        "decrypted sum, averaged over survivors). The CKKS error bound is a heuristic high-probability bound; the "
        "Paillier bound is the exact fixed-point rounding bound.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10, help="clients at 100k params")
    parser.add_argument("--clients-1m", type=int, default=3, help="clients at 1M params (3 = the HE minimum)")
    parser.add_argument("--sample", type=int, default=200, help="values timed for phe per-value encryption")
    parser.add_argument("--quick", action="store_true", help="100k rows only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = "nice python benchmarks/bench_he.py" + (" --quick" if args.quick else "")

    print("encode speed (100k) ...", file=sys.stderr, flush=True)
    speed = encode_speed(100_000, args.clients, args.sample)
    print(f"phe per-value: {1e3 * speed['per_value_seconds_each']:.2f} ms/value on {args.sample} values -> "
          f"{speed['per_value_seconds_extrapolated']:.0f} s extrapolated for 100,001 values")
    print(f"privfed packed: {speed['packed_seconds']:.2f} s in all (pool {speed['packed_precompute_seconds']:.2f} s, "
          f"online {speed['packed_online_seconds']:.2f} s)")
    print(f"ratio: packed is {speed['ratio']:.0f}x faster than per-value")
    sizes = [(100_000, args.clients)] + ([] if args.quick else [(1_000_000, args.clients_1m)])
    rows = table(sizes, with_n8192=True)
    text = render(speed, rows, command)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
