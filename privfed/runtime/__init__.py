"""Runtimes move protocol messages between parties: ``local`` (in-process) and ``flower`` (Flower deployment)."""

from .local import RoundReport, TranscriptEntry, run_round

__all__ = ["RoundReport", "TranscriptEntry", "run_round"]
