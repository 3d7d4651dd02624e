"""Atelier: an offline fashion-design generator (trainer + kiosk runtime).

The package `atelier` is the CLI, the top floor: nothing imports it. The shared base (the version, the user-facing
error type) lives at the bottom, in `edge` (`edge.version`, `edge.errors`), where the trainer (`trainer`, TensorFlow)
and the kiosk runtime (`edge`, never TensorFlow) both reach it.
"""

from edge.version import __version__

__all__ = ["__version__"]
