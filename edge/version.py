"""The package version, at the bottom of the import graph so the trainer and the kiosk can record it."""

__version__ = "0.1.0"
