"""Capturing garment photos at the kiosk for the next fine-tune.

Modules: `store` (the capture store: a folder of JPEGs plus a SQLite manifest, crash-safe, the format the trainer
reads), `pipeline` (quality gate, near-duplicate refusal, face blur, then the store), `faces` (OpenCV Haar-cascade
face detection and irreversible blurring), `archive` (export a store to a tar with checksums and import one back).
"""
