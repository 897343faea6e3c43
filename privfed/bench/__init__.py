"""Overhead harness: one aggregation (``aggregation``), whole training runs (``privfed.bench.compare``)."""
