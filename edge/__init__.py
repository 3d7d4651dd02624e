"""The kiosk runtime. Never imports TensorFlow (a test enforces it)."""
