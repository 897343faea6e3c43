"""privfed: privacy-protected federated learning of sequence models, with the cost of each protection measured.

Layers (imports point down only): ``privfed.cli`` -> ``privfed.bench`` / ``privfed.audit`` / ``privfed.threat`` ->
``privfed.fl`` -> ``privfed.runtime`` -> ``protocols`` (torch-free).
"""

__version__ = "0.1.0"
