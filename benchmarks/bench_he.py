"""HE aggregation benchmark: packed vs per-value Paillier encode, and the CKKS / Paillier cost table.

Run (from the repository root, with the project installed)::

    nice python benchmarks/bench_he.py                     # prints everything, writes benchmarks/results/he.md
    nice python benchmarks/bench_he.py --quick             # 100k only, no 1M rows (minutes, not tens of minutes)
    python benchmarks/bench_he.py --speed-only --out benchmarks/results/he_speed.md \
        --profile benchmarks/results/profile_paillier.md   # sections 1 and 3 only, with a CPU profile

1. **Encode speed** (checklist items 9-11). phe's per-value encryption (``PaillierPublicKey.encrypt`` of one float,
   one ciphertext each) is timed on a sample of ``--sample`` values and **extrapolated** linearly to the full
   vector (it is exactly linear: one independent encryption per value); privfed's packed client encode of the full
   vector is timed in the same run, randomness precomputation included, and the ratio printed.
2. **Cost table** at 100k and 1M parameters: one aggregation through ``privfed.bench.aggregation`` (the same code as
   ``privfed bench``): upload bytes per client (and x float32), client seconds (all client compute, precomputation
   included), server seconds, the key holder's decrypt seconds, measured max |error| and the declared bound.

3. **CKKS against NVFlare's default** (issue 19): client encrypt seconds and bytes of one update under NVFlare's
   default HE configuration expressed as TenSEAL calls (N=8192, coefficient moduli [60, 40, 40], scale 2^40, the
   whole flat vector in one ``ts.ckks_vector``) beside privfed's CKKS parameter sets, on the same vector.

Section 1 reports each randomness variant of packed Paillier (the default exact pool on all cores and on one core,
and the optional short-exponent pool): the whole client round, r^n pool included, and its online part, each with
its ratio to phe per value (wall, and process CPU seconds, which other jobs on a shared machine disturb less).
All figures are measured on whatever machine runs this; nothing here asserts a time.
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

    def phe_sample() -> tuple[float, float]:
        started, cpu_started = time.perf_counter(), time.process_time()
        for value in vector[:sample]:
            public.encrypt(float(value), precision=PER_VALUE_PRECISION)
        return (time.perf_counter() - started) / sample, (time.process_time() - cpu_started) / sample

    first = phe_sample()  # timed before and after privfed's variants; the mean of the two is used
    variants = {}
    for label, randomness, workers in (("exact pool, all cores (default)", "crt-pool", None),
                                       ("exact pool, one core", "crt-pool", 1),
                                       ("short-exponent pool (option)", "short-exponent", None)):
        protocol = PackedPaillierProtocol(authority=authority, max_weight=100.0, randomness=randomness)
        keys = authority.client_bundle()  # a fresh bundle: the short-exponent tables are built inside the timing
        started, cpu_started = time.perf_counter(), time.process_time()
        codec = protocol.client_codec(keys, params, clients)
        if workers is None:
            codec.precompute()
        else:
            codec._pool = keys.nth_residues(codec.n_ct, workers=workers)
        precompute, precompute_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        started, cpu_started = time.perf_counter(), time.process_time()
        ciphertexts = codec.encrypt(vector)
        online, online_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        variants[label] = {"precompute": precompute, "online": online, "total": precompute + online,
                           "cpu": precompute_cpu + online_cpu, "bytes": len(ciphertexts)}
    second = phe_sample()
    per_value, per_value_cpu = (first[0] + second[0]) / 2, (first[1] + second[1]) / 2
    for v in variants.values():
        v.update(ratio=per_value * vector.size / v["total"], online_ratio=per_value * vector.size / v["online"],
                 cpu_ratio=per_value_cpu * vector.size / v["cpu"])
    default = variants["exact pool, all cores (default)"]
    return {"params": params, "sample": sample, "per_value_seconds_each": per_value, "per_value_cpu_each": per_value_cpu,
            "per_value_seconds_extrapolated": per_value * vector.size,
            "per_value_bytes": vector.size * 512, "packed_seconds": default["total"],
            "packed_precompute_seconds": default["precompute"], "packed_online_seconds": default["online"],
            "packed_bytes": default["bytes"], "ratio": default["ratio"], "variants": variants}


def profile_paillier_client(params: int, clients: int) -> str:
    """cProfile (process CPU time as the clock) of one packed-Paillier client round, r^n pool included, for the
    default exact pool and the short-exponent option, top functions by own time; one thread, so that the pool's
    exponentiations are attributed to the functions doing them."""
    import cProfile
    import io
    import pstats

    import protocols.parallel as parallel

    authority = PaillierAuthority(2048)
    rng = np.random.default_rng(0)  # benchmark data only
    vector = weighted_vector(rng.uniform(-1, 1, params).astype(np.float32), 37.0, 100.0)
    out = io.StringIO()
    saved = parallel.usable_cores
    for randomness in ("crt-pool", "short-exponent"):
        protocol = PackedPaillierProtocol(authority=authority, max_weight=100.0, randomness=randomness)
        keys = authority.client_bundle()
        parallel.usable_cores = lambda: 1
        try:
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            codec = protocol.client_codec(keys, params, clients)
            codec.precompute()
            codec.encrypt(vector)
            profiler.disable()
        finally:
            parallel.usable_cores = saved
        out.write(f"## packed Paillier client round, randomness={randomness}: {params:,} params, 2048-bit n\n\n```\n")
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        out.write("```\n\n")
    return out.getvalue()


NVFLARE_DEFAULT = {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40], "scale_bits": 40}


def ckks_peers(params: int, repeats: int = 3) -> list[dict[str, Any]]:
    """Client encrypt seconds (best of ``repeats``) and ciphertext bytes of one update: NVFlare's default CKKS
    configuration as TenSEAL calls (N=8192, coefficient moduli [60, 40, 40], scale 2^40, the whole flat vector in
    one ``ts.ckks_vector`` and serialised, as NVFlare's model encryptor does per layer) beside privfed's CKKS
    parameter sets through privfed's own client codec, on the same vector."""
    import tenseal as ts

    from protocols.ckks import PARAMETER_SETS, CKKSAuthority, CKKSProtocol

    rng = np.random.default_rng(1)  # benchmark data only
    vector = weighted_vector(rng.uniform(-1, 1, params).astype(np.float32), 37.0, 100.0)
    rows = []
    context = ts.context(ts.SCHEME_TYPE.CKKS, NVFLARE_DEFAULT["poly_modulus_degree"],
                         coeff_mod_bit_sizes=NVFLARE_DEFAULT["coeff_mod_bit_sizes"])
    context.global_scale = 2.0 ** NVFLARE_DEFAULT["scale_bits"]
    best, size = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        size = len(ts.ckks_vector(context, vector).serialize())
        best = min(best, time.perf_counter() - started)
    rows.append({"label": "NVFlare default (TenSEAL N=8192 [60,40,40], 2^40)", "seconds": best, "bytes": size})
    for name in ("n4096", "n8192"):
        authority = CKKSAuthority(PARAMETER_SETS[name])
        codec = CKKSProtocol(authority=authority, max_weight=100.0, parameter_set=name).client_codec(
            authority.client_bundle(), params, 10)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            size = sum(len(c) for c in codec.encrypt(vector))
            best = min(best, time.perf_counter() - started)
        rows.append({"label": f"privfed ckks {name}" + (" (default)" if name == "n4096" else ""),
                     "seconds": best, "bytes": size})
    for row in rows:
        row["ratio"] = row["bytes"] / (4 * params)
    return rows


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


def render(speed: dict[str, Any], rows: list[dict[str, Any]], command: str, ckks: list[dict[str, Any]]) -> str:
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
        f"| phe per-value (timed on {speed['sample']} values before and after, extrapolated "
        f"x{speed['params'] + 1:,}) | {speed['per_value_seconds_extrapolated']:.1f} "
        f"({1e3 * speed['per_value_seconds_each']:.2f} ms/value; CPU {1e3 * speed['per_value_cpu_each']:.2f}) | "
        f"{speed['per_value_bytes']:,} |",
    ]
    for label, v in speed["variants"].items():
        lines += [
            f"| privfed packed, {label}: whole client round | {v['total']:.2f} ({v['ratio']:,.0f}x phe; CPU "
            f"{v['cpu']:.2f} s, {v['cpu_ratio']:,.0f}x phe's CPU) | "
            f"{v['bytes']:,} |",
            f"| &nbsp;&nbsp;of which r^n pool (setup phase) | {v['precompute']:.2f} | |",
            f"| &nbsp;&nbsp;of which online (encode + pack + multiply) | {v['online']:.2f} "
            f"({v['online_ratio']:,.0f}x phe) | |",
        ]
    lines += [
        "",
        f"**Packed (default exact pool, all cores) is {speed['ratio']:,.0f}x faster than per-value for the whole "
        f"client round, randomness included** (same run, same key). The short-exponent pool is an option, off by "
        f"default, resting on an extra assumption (see `protocols/paillier_keys.py`).",
        "",
        f"## CKKS client encrypt, {speed['params']:,} params: "
        f"NVFlare's default configuration beside privfed's",
        "",
        "| configuration | encrypt s (best of 3) | bytes | x float32 |",
        "|---|---:|---:|---:|",
    ]
    for row in ckks:
        lines.append(f"| {row['label']} | {row['seconds']:.3f} | {row['bytes']:,} | {row['ratio']:.2f} |")
    if not rows:
        return "\n".join(lines + [""])
    lines += [
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
    parser.add_argument("--out", type=Path, help=f"where to write the markdown (default {RESULTS}; with "
                        "--speed-only only when given)")
    parser.add_argument("--speed-only", action="store_true",
                        help="the encode-speed and CKKS-peer sections only, printed (no aggregation table, no file)")
    parser.add_argument("--params", type=int, default=100_000, help="params of the encode-speed section")
    parser.add_argument("--profile", type=Path, help="also write a CPU profile of the Paillier client round here")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_he.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))

    print(f"encode speed ({args.params:,}) ...", file=sys.stderr, flush=True)
    speed = encode_speed(args.params, args.clients, args.sample)
    print(f"phe per-value: {1e3 * speed['per_value_seconds_each']:.2f} ms/value on {args.sample} values -> "
          f"{speed['per_value_seconds_extrapolated']:.0f} s extrapolated for {args.params + 1:,} values")
    for label, v in speed["variants"].items():
        print(f"privfed packed, {label}: {v['total']:.2f} s whole client round ({v['ratio']:,.0f}x phe per value; "
              f"pool {v['precompute']:.2f} s, online {v['online']:.2f} s = {v['online_ratio']:,.0f}x; CPU "
              f"{v['cpu']:.2f} s = {v['cpu_ratio']:,.0f}x phe's CPU)")
    ckks = ckks_peers(args.params)
    for row in ckks:
        print(f"CKKS {row['label']}: encrypt {row['seconds']:.3f} s, {row['bytes']:,} bytes ({row['ratio']:.2f}x float32)")
    if args.profile:
        args.profile.write_text(f"# Paillier client hot path ({platform.machine()}, Python {platform.python_version()})"
                                f"\n\nCommand: `{command}`\n\n" + profile_paillier_client(args.params, args.clients))
    if args.speed_only:
        text = render(speed, [], command, ckks)
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        return
    sizes = [(100_000, args.clients)] + ([] if args.quick else [(1_000_000, args.clients_1m)])
    rows = table(sizes, with_n8192=True)
    text = render(speed, rows, command, ckks)
    print(text)
    out = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
