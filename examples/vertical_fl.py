"""Vertical federated learning of sequence models: three parties, one label, a protected cut layer.

Run:  python examples/vertical_fl.py

The embedded default: a bank (holds the 3-class risk tier and twelve months of balances), a shop (eight weeks of
spending) and a telco (ten periods of usage) hold different event sequences about overlapping customers.
1. PSI aligns them: each party learns only the shared ids (and the others' set sizes), never the rest.
2. A split GRU trains: one bottom GRU per party, the bank's top model, only cut-layer embeddings and gradients
   cross, as privfed wire messages (so the bytes below are exact).
3. The same run under ``secure-sum`` (the bank learns only the SecAgg sum of the shop's and telco's embeddings) and
   ``label-dp`` (the shop and telco see only clipped, noised gradients; epsilon from the shared accountant).
4. The shop drops out mid-training: the session aborts cleanly with the reason instead of training on less.
"""

from __future__ import annotations

from privfed.vertical import load_vertical_config, run_vertical


def show(summary: dict) -> None:
    metrics, base = summary["final_metrics"], summary["baseline"]
    eps = summary["epsilon"]
    print(f"{summary['protection']:>12}: aligned {summary['intersection_size']} customers "
          f"(pairwise {summary['pairwise_intersections']}), accuracy {metrics['accuracy']:.3f} "
          f"(majority class {base['accuracy']:.3f}), macro-F1 {metrics['macro_f1']:.3f}"
          + (f", label-DP epsilon {eps:.3g}" if eps is not None else ""))
    for name, party in summary["parties"].items():
        print(f"{'':>14}{name} ({party['role']}): sent {party['bytes_sent']:,} B "
              f"{dict(party['bytes_sent_by_phase'])}, {party['seconds']:.2f} s")


def main() -> None:
    for protection in ("plaintext", "secure-sum", "label-dp"):
        show(run_vertical(load_vertical_config(None, [f'vertical.protection="{protection}"'])))
    dropped = run_vertical(load_vertical_config(None, ["vertical.epochs=1"]), drops={"shop": 3})
    print(f"{'dropout':>12}: status {dropped['status']}: {dropped['aborted']}")
    assert dropped["status"] == "aborted" and dropped["final_metrics"] is None


if __name__ == "__main__":
    main()
