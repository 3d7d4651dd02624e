"""Shared fixtures live in one module per area, loaded as plugins."""

import os

# Quiet TensorFlow's C++ logging in tests that import it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ["fixtures_data", "fixtures_runs", "fixtures_bundles", "fixtures_browser", "fixtures_asyncio",
                  "fixtures_kiosk"]
