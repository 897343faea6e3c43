"""Secure aggregation with dropouts: what the server learns, who is in the sum, and when the round aborts.

Run:  python examples/secagg_dropouts.py

Three rounds in-process (keys and masks from the OS; synthetic updates from a seeded generator):
1. SecAgg over 10 clients, threshold 6 (option threshold=0.6): one client drops at each of the four phases. Those
   gone before the upload are excluded (their pairwise masks are removed with their reconstructed masking keys);
   the one that drops during unmasking had already uploaded, so its input is in the sum.
2. SecAgg+ over 60 clients on a random 8-regular Harary graph, threshold 5 within each neighbourhood.
3. 8 of 10 clients vanish during unmasking: fewer than t remain, the round aborts with no result.
"""

from __future__ import annotations

import numpy as np

from protocols import registry
from protocols.base import ClientUpdate
from privfed.runtime.local import run_round


def synthetic(n: int, dim: int) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(0)  # example data only
    return {c: ClientUpdate(rng.uniform(-1, 1, dim).astype(np.float32), float(rng.integers(1, 51))) for c in range(n)}


def exact(ups: dict[int, ClientUpdate], members) -> np.ndarray:
    w = np.array([ups[c].weight for c in members])
    return w @ np.stack([ups[c].vector.astype(np.float64) for c in members]) / w.sum()


def show(title: str, report, ups) -> None:
    print(f"\n== {title}")
    for cid, why in sorted(report.dropped.items()):
        print(f"   client {cid} dropped at {why['phase']}")
    if report.result is None:
        print(f"   ABORTED: {report.aborted} (no result)")
        return
    result = report.result
    error = np.abs(result.mean - exact(ups, result.survivors)).max()
    info = result.info
    print(f"   graph {info['graph']} (k={info['neighbours']}), threshold {info['threshold']}, ring 2^{info['ring_bits']}")
    print(f"   inputs in the sum: {len(result.survivors)} -> {list(result.survivors)}")
    print(f"   unmask answered by {info['unmask_responders']} clients")
    print(f"   max |mean - exact mean of those inputs| = {error:.2e} <= declared bound {result.error_bound:.2e}")
    upload = report.summary()["upload_bytes_per_client"]
    print(f"   upload per client {upload:,.0f} B = {upload / (4 * result.mean.size):.3f} x float32")


def main() -> None:
    ups = synthetic(10, 5_000)
    secagg = registry.create("secagg", {"max_weight": 50.0, "clip": 1.0, "threshold": 0.6})
    drops = {1: "advertise-keys", 4: "share-keys", 6: "masked-input", 9: "unmask"}
    show("SecAgg, one dropout per phase", run_round(secagg, 1, ups, drops=drops), ups)

    many = synthetic(60, 2_000)
    plus = registry.create("secagg", {"max_weight": 50.0, "clip": 1.0, "graph": "harary", "neighbours": 8,
                                      "threshold": 5})
    show("SecAgg+ (sparse Harary graph), 6 dropouts before upload",
         run_round(plus, 1, many, drops={c: "before-upload" for c in range(0, 60, 10)}), many)

    show("SecAgg, 8 of 10 gone during unmasking",
         run_round(secagg, 2, ups, drops={c: "after-upload" for c in range(8)}), ups)


if __name__ == "__main__":
    main()
