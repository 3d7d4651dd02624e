"""One module per `atelier` subcommand.

Each module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. Modules import nothing heavy
at module level (no TensorFlow, no OpenCV): the CLI imports every one of them to build its parser, and the edge
commands must start on a kiosk where TensorFlow is not installed.
"""

# Order is the order shown in `atelier --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "features",
    "evaluate",
    "report",
    "export",
    "train_encoder",
    "evaluate_encoder",
    "train_upscaler",
    "generate",
    "kiosk",
    "capture",
    "finetune",
    "bench",
)
