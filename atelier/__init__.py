"""Atelier: an offline fashion-design generator (trainer + kiosk runtime).

The package `atelier` holds only what both sides share: the version, the user-facing error type and the CLI.
The trainer lives in `trainer` (TensorFlow), the kiosk runtime in `edge` (never imports TensorFlow).
"""

__version__ = "0.1.0"
