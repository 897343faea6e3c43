"""``privfed vertical``: summary.json per the issue, --compare side by side, --catalogue, clean failures."""

from __future__ import annotations

import json
import pathlib

import numpy as np
from click.testing import CliRunner

from privfed.cli import main


def _tiny(tmp_path: pathlib.Path, shop_ids=range(5, 45)) -> pathlib.Path:
    rng = np.random.default_rng(3)
    rows = lambda ids, steps, label: "\n".join(  # noqa: E731
        f"e{i},{t},{rng.normal(i % 2):.3f}" + (f",{i % 2}" if label else "") for i in ids for t in range(steps))
    (tmp_path / "a.csv").write_text("id,t,x,y\n" + rows(range(40), 3, True) + "\n")
    (tmp_path / "b.csv").write_text("id,t,s\n" + rows(shop_ids, 4, False) + "\n")
    (tmp_path / "c.csv").write_text("id,t,u\n" + rows(range(45), 2, False) + "\n")
    config = tmp_path / "v.toml"
    config.write_text('[vertical]\nlabel_party = "a"\nlabel_column = "y"\nid_column = "id"\ntime_column = "t"\n'
                      "hidden = 4\nembedding = 2\nepochs = 1\nbatch_size = 16\n"
                      + "".join(f'[[vertical.party]]\nname = "{n}"\npath = "{n}.csv"\n' for n in "abc"))
    return config


def test_summary_json_reports_what_the_issue_asks(tmp_path: pathlib.Path) -> None:
    done = CliRunner().invoke(main, ["vertical", str(_tiny(tmp_path)), "--out", str(tmp_path / "run"),
                                     "--json", str(tmp_path / "s.json")])
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == json.loads((tmp_path / "s.json").read_text())
    assert summary["intersection_size"] == 35
    assert set(summary["final_metrics"]) == {"accuracy", "macro_f1"}
    assert all(set(p) >= {"bytes_sent", "bytes_received", "seconds"} for p in summary["parties"].values())
    assert summary["psi"]["bytes_sent"]["b"] > 0 and summary["epsilon"] is None
    assert "plaintext" in done.output
    entries = [json.loads(line) for line in (tmp_path / "run" / "transcript.jsonl").read_text().splitlines()]
    kinds = {e["kind"] for e in entries}
    assert {"psi-masked", "psi-remasked", "psi-finish", "aligned", "forward", "embedding", "gradient", "stop"} <= kinds
    sent = sum(e["size"] for e in entries if e["sender"] == "b")
    assert sent == summary["parties"]["b"]["bytes_sent"]  # the transcript and the byte counts are the same bytes


def test_compare_runs_protections_side_by_side(tmp_path: pathlib.Path) -> None:
    done = CliRunner().invoke(main, ["vertical", str(_tiny(tmp_path)), "--compare", "plaintext,label-dp,secure-sum",
                                     "--out", str(tmp_path / "cmp"), "-c", "vertical.epochs=2"])
    assert done.exit_code == 0, done.output
    runs = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"]
    assert [r["protection"] for r in runs] == ["plaintext", "label-dp", "secure-sum"]
    assert runs[0]["epsilon"] is None and runs[1]["epsilon"] > 0 and runs[1]["label_dp"]["epochs"] == 2
    assert runs[2]["parties"]["b"]["bytes_sent_by_phase"]["secure-sum"] > 0
    assert "label DP epsilon" in done.output


def test_catalogue_says_what_each_protection_hides(tmp_path: pathlib.Path) -> None:
    done = CliRunner().invoke(main, ["vertical", "--catalogue", "--json", str(tmp_path / "c.json")])
    assert done.exit_code == 0
    rows = json.loads((tmp_path / "c.json").read_text())
    assert {r["protection"] for r in rows} == {"plaintext", "label-dp", "secure-sum", "secure-sum+label-dp"}
    assert "only the sum" in next(r for r in rows if r["protection"] == "secure-sum")["label_party_sees"]


def test_failures_are_clear_and_non_zero(tmp_path: pathlib.Path) -> None:
    bad = CliRunner().invoke(main, ["vertical", "-c", "vertical.epochs=0"])
    assert bad.exit_code == 1 and "vertical.epochs" in bad.output
    wrong = CliRunner().invoke(main, ["vertical", "-c", "fl.rounds=3"])
    assert wrong.exit_code == 1 and "vertical.KEY=VALUE" in wrong.output
    disjoint = CliRunner().invoke(main, ["vertical", str(_tiny(tmp_path, shop_ids=range(100, 120))),
                                         "--out", str(tmp_path / "r")])
    assert disjoint.exit_code == 1 and "never intersect" in disjoint.output
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "aborted"


def test_shipped_default_data_is_what_the_generator_makes(tmp_path: pathlib.Path) -> None:
    from privfed.vertical.make_default_data import generate
    generate(tmp_path)
    shipped = pathlib.Path(__file__).parents[1] / "privfed" / "vertical" / "data"
    for name in ("bank.csv", "shop.csv", "telco.csv"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name
