"""Every runnable example in examples/ runs to completion (README promises them)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))


def test_the_examples_are_there() -> None:
    assert {"quickstart.py", "encrypted_fedavg_ckks.py", "paillier_demo.py", "secagg_dropouts.py", "dp_run.py",
            "mixed_plan.py"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name: str, tmp_path: pathlib.Path) -> None:
    args = [sys.executable, str(ROOT / "examples" / name)]
    if name == "mixed_plan.py":
        args.append(str(tmp_path / "run"))
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip()
