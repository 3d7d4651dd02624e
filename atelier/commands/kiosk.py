"""`atelier kiosk`: serve the touch-screen kiosk for a model bundle on this machine (no TensorFlow needed)."""

from __future__ import annotations

import argparse

NAME = "kiosk"
HELP = "serve the kiosk page and API for a model bundle (offline, bound to 127.0.0.1 by default)"

DEFAULT_CONFIG = "/etc/atelier/kiosk.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", metavar="DIR", default=None,
                   help="model bundle folder (default: the config's `bundle`, else <repo>/models/default)")
    p.add_argument("--camera", metavar="URI", default=None,
                   help="camera source: v4l2:///dev/video0, file://clip.avi or synthetic:// (default: none)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help=f"kiosk TOML settings (default: {DEFAULT_CONFIG} when it exists); flags override it")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.kiosk.config import load_config, validate
    from edge.kiosk.server import serve

    config_path = Path(args.config) if args.config else None
    if config_path is None and Path(DEFAULT_CONFIG).is_file():
        config_path = Path(DEFAULT_CONFIG)
    config = load_config(config_path).replace(
        bundle=Path(args.bundle).expanduser().resolve() if args.bundle else None,
        camera=args.camera,
        host=args.host,
        port=args.port,
    )
    return serve(validate(config))
