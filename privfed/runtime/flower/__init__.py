"""Flower runtime: privfed's protocol state machines over Flower's deployment engine (SuperLink + SuperNodes).

* :mod:`.server_app` — the ServerApp (``app``): enrols nodes and drives any protocol pair phase by phase, one
  ``Grid.send_and_receive`` per phase (:mod:`.driver`), reporting bytes and seconds exactly as
  :func:`privfed.runtime.local.run_round` does;
* :mod:`.client_app` — the ClientApp (``app``): answers with the same client state machine, keeping per-node
  protocol state (keys, the round's machine) in ``context.state`` (:mod:`.state`);
* :mod:`.envelope` — how payload bytes ride in Flower records; :mod:`.config` — the run configuration (one
  protection or a per-round plan);
* :mod:`.keys` — the CKKS key authority: keys dealt to files before a run (secret to nodes, public to the server);
* :mod:`.training` / :mod:`.updates` — where a node's update comes from: LSTM/GRU training on its partition, or
  the bench's synthetic vectors (to check a Flower round against the in-process runtime);
* :mod:`.loopback` — start a SuperLink and SuperNodes on 127.0.0.1 (tests, local trials).

What crosses the network: per phase, the server's request bytes to each node and each node's reply bytes, as
produced by the protocol, inside a small clear-text envelope (round, phase, client id, status, the client's compute
seconds); with ``update-source = "train"`` also the global model (in the clear, as in any FedAvg) and a training
acknowledgement. Never the raw update outside the protocol's upload, never a key.

Threat model of the transport: ``--insecure`` (loopback trials) means plain HTTP with no TLS and no node
authentication. In every mode the SuperLink stores and forwards every message, so it sees exactly the privfed
server's view; privfed's protections are end-to-end inside the payloads and never rely on the channel. For real
deployments use TLS (``--ssl-*`` on the SuperLink, ``--root-certificates`` on nodes) and SuperNode authentication
so that only enrolled nodes join (see README, "Running on Flower").

Importing this package needs ``flwr`` (``pip install "privfed[flower]"``).
"""

__all__ = ["client_app", "server_app", "driver", "envelope", "config", "state", "keys", "training", "updates",
           "loopback"]
