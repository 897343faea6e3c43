"""Flower transport: privfed's protocol messages over Flower's deployment engine (SuperLink + SuperNodes).

Transport only — no training, no data, no applications (those are :mod:`privfed.apps.flower`):

* :mod:`.driver` — drive any protocol pair phase by phase over a Flower ``Grid``, one send-and-receive per phase,
  reporting bytes and seconds exactly as :func:`privfed.runtime.local.run_round` does;
* :mod:`.envelope` — how payload bytes ride in Flower records;
* :mod:`.state` — per-node protocol state kept in ``context.state`` between messages;
* :mod:`.keys` — the CKKS key authority: keys dealt to files before a run (secret to nodes, public to the server);
* :mod:`.loopback` — start a SuperLink and SuperNodes on 127.0.0.1 (tests, local trials);
* :mod:`.fastnode`, :mod:`.fastexec` — loopback launchers of Flower's own SuperNode and SuperExec with a short idle
  poll and warm (forked) ClientApp processes;
* :mod:`.objects` — Flower's object pulls retried within 0.01-0.05 s instead of its 1-10 s backoff (the stalls of a
  phase whose objects are still in flight when their receiver asks).

Threat model of the transport: ``--insecure`` (loopback trials) means plain HTTP with no TLS and no node
authentication. In every mode the SuperLink stores and forwards every message, so it sees exactly the privfed
server's view; privfed's protections are end-to-end inside the payloads and never rely on the channel. For real
deployments use TLS (``--ssl-*`` on the SuperLink, ``--root-certificates`` on nodes) and SuperNode authentication
so that only enrolled nodes join (see README, "Running on Flower").

Importing the modules needs ``flwr`` (``pip install "privfed[flower]"``).
"""

__all__ = ["driver", "envelope", "state", "keys", "loopback", "fastnode", "fastexec", "objects"]
