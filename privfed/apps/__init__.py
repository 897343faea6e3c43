"""Deployment applications: privfed's runtime combined with training (DESIGN.md, layer ``privfed/apps``).

* :mod:`privfed.apps.flower` — the Flower ServerApp and ClientApp (importing it needs ``privfed[flower]``).
"""

__all__: list[str] = []
