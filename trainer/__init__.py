"""The trainer: garment photos -> DCGAN -> checkpoints -> evaluation -> TFLite export.

Importing this package is cheap; TensorFlow is imported by the modules that need it.
"""
