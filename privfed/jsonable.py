"""Plain JSON values for everything privfed writes (rounds, summaries, reports, CLI output).

JSON has no infinity or NaN, and privfed reports infinite epsilon honestly, so non-finite floats become the strings
"inf", "-inf" and "nan"; numpy arrays and scalars become lists and Python numbers; anything else unknown becomes its
``str``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """``value`` with every nested part turned into a plain JSON type (see the module docstring)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
