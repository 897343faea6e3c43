"""Generate the embedded default's three long CSVs (run offline; the outputs ship in ``data/``).

A universe of customers with a latent risk tier (0, 1, 2). The bank (label party) holds the tier and twelve months
of balances; the shop holds eight weeks of spending; the telco ten periods of usage. Each party sees part of the
signal and misses some customers, so alignment matters and the parties together beat any one of them.
The experiment-style seed here drives synthetic data only (no secret is drawn).

    python -m privfed.vertical.make_default_data [OUT_DIR]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

__all__ = ["generate"]

SEED = 2026
CUSTOMERS = 360


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def generate(out_dir: Path, seed: int = SEED, customers: int = CUSTOMERS) -> None:
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [f"c{i:04d}" for i in range(customers)]
    tier = rng.choice(3, size=customers, p=[0.45, 0.33, 0.22])
    held = {party: rng.random(customers) < share for party, share in (("bank", 0.9), ("shop", 0.85),
                                                                        ("telco", 0.85))}
    bank, shop, telco = [], [], []
    for i, entity in enumerate(ids):
        k = int(tier[i])
        if held["bank"][i]:
            level = rng.normal(5.0 - 1.2 * k, 1.0)
            for t in range(12):
                balance = level - 0.15 * k * t + rng.normal(0, 0.8)
                overdraft = int(balance < 1.0 + 0.5 * k * rng.random())
                bank.append([entity, t, round(float(balance), 3), overdraft, k])
        if held["shop"][i]:
            base = rng.normal(3.0 + 1.0 * (k == 1) - 0.8 * (k == 2), 0.7)
            for week in range(8):
                spend = base + 0.6 * np.sin(week + i) + rng.normal(0, 0.6)
                returns = rng.poisson(0.3 + 0.9 * (k == 2))
                shop.append([entity, f"2026-W{week + 10:02d}", round(float(spend), 3), int(returns)])
        if held["telco"][i]:
            usage = rng.normal(2.0 + 1.1 * (k == 1), 0.6)
            for t in range(10):
                minutes = usage + rng.normal(0, 0.7)
                data_gb = rng.gamma(2.0, 0.5 + 0.6 * (k == 0))
                telco.append([entity, t, round(float(minutes), 3), round(float(data_gb), 3)])
    _write(out_dir / "bank.csv", ["customer", "t", "balance", "overdraft", "tier"], bank)
    _write(out_dir / "shop.csv", ["customer", "t", "spend", "returns"], shop)
    _write(out_dir / "telco.csv", ["customer", "t", "minutes", "data_gb"], telco)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("data"))
