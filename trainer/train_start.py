"""Starting a run: the resolved config, this worker's shard of the data, and (in a cluster) the agreement of every
worker — all before anything is written, so a failed start leaves no run folder that --resume would trust."""

from __future__ import annotations

import logging
from pathlib import Path

from edge.errors import UserError
from trainer import checkpoints, distribute, run_folder
from trainer.config import TrainConfig
from trainer.dataset import TrainingData, column_steps, load_training_data, shard_mask
from trainer.float_weights import WEIGHTS_INFO

log = logging.getLogger(__name__)


def prepare_config(cfg: TrainConfig, run_dir: Path, resume: bool) -> TrainConfig:
    """The run's config: the saved one on --resume (a larger --epochs wins); refuses to overwrite a run."""
    config_path = run_dir / run_folder.CONFIG
    run_folder.check_run_files(run_dir)
    if resume:
        if not config_path.is_file():
            raise UserError(f"--resume: {run_dir} has no {run_folder.CONFIG}; start a new run without --resume")
        if (run_dir / WEIGHTS_INFO).is_file():  # trainer.float_weights: no optimizer state, no history
            raise UserError(f"--resume: {run_dir} holds a bundle's float weights, not a run; fine-tune them with "
                            f"`atelier finetune --from {run_dir}`, or train a new run")
        saved = TrainConfig.from_json(run_folder.read_config(run_dir))
        saved.epochs = max(saved.epochs, cfg.epochs) if cfg.epochs else saved.epochs
        if cfg.data_dir:  # --data on --resume: the same photos in another place (a run carried to another machine)
            saved.data_dir = cfg.data_dir
        return saved
    if config_path.exists() or checkpoints.list_checkpoints(run_dir / "checkpoints"):
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out")
    return cfg


def _check_same_data(run_dir: Path, data: TrainingData) -> None:
    """On --resume: the photos found must be the ones the run trained on (its data_report.json's digest of the
    full scan's class, name and size of every file; for an older report, the classes and the file count),
    wherever they sit now."""
    import json

    path = run_dir / run_folder.DATA_REPORT
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # an older run folder without a readable report: nothing to compare with
    if not isinstance(saved, dict):
        return
    if saved.get("files_digest"):  # the full scan's (class, name, size) list: the same on every worker
        same = saved["files_digest"] == data.files_digest
        then = f"{saved.get('n_files')} files in {saved.get('class_names')}"
    else:  # an older report: by classes and the full scan's file count
        same = (saved.get("class_names"), saved.get("n_files")) == (data.class_names, data.total_files())
        then = f"{saved.get('n_files')} files in {saved.get('class_names')}"
    if not same:
        raise UserError(f"the photos in {data.report.data_dir} are not the ones this run trained on ({then} "
                        f"then, {data.total_files()} in {data.class_names} now): give --data the same folder, "
                        "or start a new run")


def start_run(cfg: TrainConfig, run_dir: Path, resume: bool, data: TrainingData | None, progress: bool,
              topology: distribute.Topology) -> tuple[TrainConfig, TrainingData, int]:
    """The resolved config, this worker's data and the steps per epoch; nothing is written yet.

    In a cluster every worker gets here and agrees with the others (the chief's config on --resume, then the
    config/data handshake) before anything is written, so a failed start leaves no run folder behind.
    """
    multi = topology.kind == "multi-worker"
    failure: UserError | None = None
    if not multi:
        cfg = prepare_config(cfg, run_dir, resume)
    else:
        local_data_dir, chief_cfg = cfg.data_dir, None
        if topology.is_chief:
            try:
                chief_cfg = prepare_config(cfg, run_dir, resume).to_json()
            except UserError as exc:
                failure = exc
        shared = distribute.broadcast_json(topology, {"config": chief_cfg, "error": str(failure or "") or None})
        if shared["error"]:
            raise failure or UserError(f"the chief (worker 0) could not start: {shared['error']}")
        if resume:  # the run folder is the chief's: its config decides; the data may sit elsewhere here
            cfg = TrainConfig.from_json(shared["config"])
            if not topology.is_chief and local_data_dir:
                cfg.data_dir = local_data_dir
        elif topology.is_chief:
            cfg = TrainConfig.from_json(chief_cfg)
    rows = cfg.batch_size // topology.num_workers
    first_row = topology.worker_id * rows
    local_steps = 0
    try:
        if multi:
            distribute.check_batch(cfg.batch_size, topology)
        if data is None:
            select = (lambda n: shard_mask(n, cfg.batch_size, cfg.seed, first_row, rows)) if multi else None
            data = load_training_data(cfg.data_dir, cfg.size_px, classes=cfg.class_names, crop=cfg.crop,
                                      progress=progress, select=select)
        if resume and topology.is_chief:  # the chief holds the run folder and its report
            _check_same_data(run_dir, data)
        if cfg.conditional:
            if len(data.class_names) < 2:
                raise UserError("--conditional needs at least two classes (class subfolders) in the data")
            if cfg.class_names and list(cfg.class_names) != data.class_names:
                raise UserError(f"the run's classes {cfg.class_names} differ from the data's {data.class_names}")
        cfg.class_names = data.class_names
        if not multi and cfg.batch_size > len(data.images):
            log.warning("batch size %d is larger than the %d images; using %d", cfg.batch_size, len(data.images),
                        len(data.images))
            cfg.batch_size = rows = len(data.images)
        distribute.check_batch(cfg.batch_size, topology)
        cfg.validate()
        local_steps = column_steps(data, cfg.batch_size, cfg.seed, first_row, rows)
    except UserError as exc:
        if not multi:
            raise
        failure = exc
    config_hash = distribute.fingerprint({k: v for k, v in cfg.to_json().items() if k != "data_dir"})
    data_hash = bytes.fromhex(data.files_digest)[:16] if data is not None and data.files_digest else bytes(16)
    n_used = len(data.images) if data is not None else 0
    n_skipped = len(data.report.skipped) if data is not None else 0
    numbers = distribute.handshake(topology, failure is None, config_hash, data_hash,
                                   [local_steps, n_used, n_skipped])
    if failure is not None:
        raise failure
    assert data is not None
    spe = int(numbers[:, 0].min())
    if spe < 1:
        raise UserError(f"too few usable images: one row of the global batch of {cfg.batch_size} has no image "
                        f"({data.total_files()} files); lower --batch-size")
    if multi:
        data.report.workers = [{"worker": w, "n_used": int(u), "n_skipped": int(k)}
                               for w, (_, u, k) in enumerate(numbers)]
        data.report.n_used = int(numbers[:, 1].sum())
        log.info("%s: this worker decoded %d of %d files (its shard); %d steps per epoch", topology.describe(),
                 n_used, data.total_files(), spe)
    return cfg, data, spe
