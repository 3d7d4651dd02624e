"""The kiosk: a local web server and touch page that generate and show designs from a model bundle, offline.

Modules, from the bottom up:
- `config` (KioskConfig from TOML + CLI), `latents` (design IDs and latent operations), `camera` (FrameSource by
  URI, newest-frame mailbox, reconnecting feed), `camera_preview` (the preview JPEG), `prometheus` (the
  /metrics text), `png` (PNG encoding and the cache of encoded designs), `api_error` (ApiError);
- `worker/` (the generation worker: the shared queue machine, and the lanes and batching policies);
- `design_ids` (a bundle's design-ID vocabulary), `service` (the engine behind the routes: model slot, pictures,
  health);
- `bundle_checks` (what a bundle must pass to serve), `bundle_upload` (unpacking a staff upload), `hot_swap`
  (models-folder watcher, swap and rollback), `staff` (PIN guard and sessions), `staff_desk` (PIN, capture
  pipeline, model manager together);
- `routes/` (one module per route group, registered through `routes.Routes`), `json_routes` (the lean path of
  the hot JSON POSTs), `middleware` (access log, body limit, HEAD), `app` (the app factory), `server` (uvicorn
  runner with systemd notifications).

The page lives in `static/` and needs nothing from the network.
"""
