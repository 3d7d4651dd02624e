"""The kiosk: a local web server and touch page that generate and show designs from a model bundle, offline.

Modules: `config` (KioskConfig from TOML + CLI), `latents` (design IDs and latent operations), `worker`
(generation thread with request batching and a PNG cache), `camera` (FrameSource by URI, newest-frame
mailbox, reconnecting feed), `metrics` (Prometheus text), `service` (the engine behind the routes), `app`
(the FastAPI app factory), `server` (uvicorn runner with systemd notifications), `staff` / `staff_api`
(staff PIN, capture endpoints), `hot_swap` (models-folder watcher, verification, swap and rollback). The page lives in
`static/` and needs nothing from the network.
"""
