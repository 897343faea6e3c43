"""The privfed Flower apps: ServerApp and ClientApp combining the Flower transport with training.

* :mod:`.server_app` — the ServerApp (``app``): enrols nodes and runs rounds (synthetic bench vectors or FedAvg
  training), writing a report or a whole privfed run directory;
* :mod:`.client_app` — the ClientApp (``app``): trains on node-local data and answers protocol phases;
* :mod:`.config` — the run configuration; :mod:`.training` / :mod:`.updates` / :mod:`.nodedata` — where a node's
  update comes from; :mod:`.report` — one round's record;
* :mod:`.evaluation` / :mod:`.secure_eval` — federated evaluation, in the clear or through the round's secure sum.

What crosses the network: per phase, the server's request bytes to each node and each node's reply bytes, as
produced by the protocol, inside a small clear-text envelope; with ``update-source = "train"`` also the global model
(in the clear, as in any FedAvg), the public task schema, and the nodes' evaluation counts and sums: per node only
under protections that show per-client figures anyway, else only their totals (see :mod:`.evaluation`). Never the raw update outside the protocol's upload, never a key, never a node's data.
"""

__all__ = ["client_app", "server_app", "config", "training", "updates", "report", "evaluation", "secure_eval"]
