"""A Flower quickstart-style app (Message API) whose aggregation is privfed's SecAgg.

The model is a small NumPy linear regression on each node's own synthetic data. Compared with a plain Flower app,
three lines change: the ClientApp gets ``mods=[privfed_mod(...)]`` and registers ``privfed_phases`` as its query
handler, and the ServerApp calls ``privfed_round`` instead of averaging the trained arrays itself. The trained arrays then never reach the server: only the SecAgg-masked
update does, and the server learns the weighted mean update.

    flwr run examples/flower/adapter privfed-loopback --stream     # on examples/flower/loopback.sh start 3
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from privfed.apps.flower.adapter import privfed_mod, privfed_phases, privfed_round

TRUE_WEIGHTS = np.array([1.0, -2.0, 0.5])

# ---- ClientApp: the app's own training, plus one privfed mod ---------------------------------------------------
client_app = ClientApp(mods=[privfed_mod(accept=("secagg",))])
client_app.query()(privfed_phases)  # privfed's protocol phases


def load_data(partition_id: int) -> tuple[np.ndarray, np.ndarray]:
    """This node's own data (synthetic here; a real node would read its files)."""
    rng = np.random.default_rng(100 + partition_id)
    x = rng.normal(size=(40 + 10 * partition_id, 3))
    return x, x @ TRUE_WEIGHTS + 0.05 * rng.normal(size=len(x))


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    weights = msg.content["arrays"].to_numpy_ndarrays()[0]
    x, y = load_data(int(context.node_config.get("partition-id", 0)))
    for _ in range(10):
        weights = weights - 0.1 * x.T @ (x @ weights - y) / len(y)
    return Message(RecordDict({"arrays": ArrayRecord([weights]),
                               "metrics": MetricRecord({"num-examples": len(y)})}), reply_to=msg)


# ---- ServerApp: privfed_round instead of averaging the trained arrays --------------------------------------------
server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    rounds = int(context.run_config.get("num-server-rounds", 3))
    arrays = ArrayRecord([np.zeros(3)])
    node_ids = list(grid.get_node_ids())
    history = []
    for round_id in range(1, rounds + 1):
        arrays, report = privfed_round(grid, arrays, node_ids, round_id, "secagg", {"max_weight": 100, "clip": 5.0})
        history.append({"round": round_id, "survivors": report.survivors if report else [],
                        "upload_bytes_per_client": report.summary()["upload_bytes_per_client"] if report else 0})
    result = {"weights": arrays.to_numpy_ndarrays()[0].tolist(), "rounds": history}
    print(json.dumps(result))
    target = str(context.run_config.get("result", ""))
    if target:
        Path(target).write_text(json.dumps(result), encoding="utf-8")
