"""Smoke test of the peer benchmark at a toy size (4 clients x 1,000 params, one repeat): both drivers complete a
round on the same inputs and agree with the exact weighted mean. No time is asserted (figures live in
``benchmarks/results/``); skipped when flwr is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_peers  # noqa: E402


def test_peer_benchmark_runs_both_tools_on_the_same_inputs() -> None:
    rows = bench_peers.measure_size(4, 1_000, 1)
    assert [(r["tool"], r["graph"]) for r in rows] == [("privfed", "complete"), ("Flower", "full"),
                                                       ("privfed", "sparse"), ("Flower", "5 shares")]
    for row in rows:
        assert row["seconds"] > 0 and row["cpu"] > 0 and row["floor"] > 0 and row["floor_cpu"] >= 0
        assert row["error"] < 1e-4  # both aggregate correctly (Flower's 2^22-level quantisation included)
    privfed, flower = rows[0], rows[1]
    assert privfed["upload"] < flower["upload"]  # counted the same way: every client-to-server message
    table = bench_peers.report(rows)
    assert table.count("\n") == len(rows) + 1 and "Flower" in table


def test_cold_timing_times_the_same_settings() -> None:
    """``--cold`` (no untimed round before each timed one) measures the same four settings, just as correctly."""
    rows = bench_peers.measure_size(4, 1_000, 1, warm=False)
    assert [(r["tool"], r["graph"]) for r in rows] == [("privfed", "complete"), ("Flower", "full"),
                                                       ("privfed", "sparse"), ("Flower", "5 shares")]
    assert all(r["error"] < 1e-4 and r["seconds"] > 0 for r in rows)
