"""Experiments: the FedAvg loop (clients train with :mod:`privfed.fl`, aggregate through :mod:`privfed.runtime` under
a plan resolved by :mod:`privfed.threat`) and the run directory it writes.

Entry point: :func:`run_fedavg` (one run, with a run directory and ``resume``). ``privfed run`` is its
command-line face.
"""

from .fedavg import FedAvgResult, StopRun, run_fedavg

__all__ = ["FedAvgResult", "StopRun", "run_fedavg"]
