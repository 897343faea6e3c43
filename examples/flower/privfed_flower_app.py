"""Entry points of the privfed Flower app (referenced from this directory's pyproject.toml).

Everything lives in the installed privfed package (privfed.apps.flower); this module only names the two apps so
``flwr run`` can package this directory. Every node and the SuperLink need privfed installed with its
``flower`` extra.
"""

from privfed.apps.flower import client_app as _client
from privfed.apps.flower import server_app as _server

server_app = _server.app
client_app = _client.app
