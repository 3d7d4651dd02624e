"""Record an evaluation in a bundle's manifest, so a bundle says how good it is (float and quantized).

`atelier evaluate BUNDLE --data D --record` stores the bundle's own numbers under
`manifest["evaluation"]["<quantization>"]` (int8 or fp16); `atelier evaluate RUN_DIR --data D --record BUNDLE`
stores the float generator's under `manifest["evaluation"]["float"]` after checking that BUNDLE was exported from
that run (same training config). The model files are re-hashed and checked before the manifest is rewritten, so a
damaged bundle is never blessed with numbers. Rewriting the manifest changes the bundle's model ID (the sha256 of
manifest.json): the numbers are part of what the bundle is.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import UserError

if TYPE_CHECKING:
    from edge.bundle import Bundle

log = logging.getLogger(__name__)

RECORDED_ROWS = ("designs", "designs_matched", "heldout", "heldout_matched", "designs_vs_heldout",
                 "train_vs_heldout")


def summary(result: dict[str, Any], command: list[str] | None = None) -> dict[str, Any]:
    """The part of an evaluation worth keeping in a manifest: the metric rows, class accuracy, copying test."""
    from trainer.portable_paths import portable_if_absolute

    rows = {k: result["rows"][k] for k in RECORDED_ROWS if k in result.get("rows", {})}
    model = {k: v for k, v in result["model"].items() if k in ("kind", "path", "generator", "epoch",
                                                                "quantization", "batch", "backend")}
    data = {k: result["data"][k] for k in ("dir", "classes", "n_train", "n_heldout", "heldout")}
    for fields, key in ((model, "path"), (data, "dir"), (data, "heldout")):  # no machine paths in a manifest
        if isinstance(fields.get(key), str):
            fields[key] = portable_if_absolute(fields[key])
    out: dict[str, Any] = {
        "model": model,
        "data": data,
        "latents": result["latents"],
        "features_sha256": result["features"]["sha256"],
        "rows": rows,
        "class_accuracy": None,
        "novelty": None,
        "evaluated_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command or [],
    }
    acc = result.get("class_accuracy")
    if acc is not None:
        out["class_accuracy"] = {"designs": acc["designs"], "per_class": acc["per_class"],
                                 "heldout": acc["heldout"]}
        for key in ("heldout_per_class", "share_of_heldout_accuracy"):
            if key in acc:
                out["class_accuracy"][key] = acc[key]
    # What a person sees (trainer.realism): the 128 px rows, the two-sample test, spectrum and diversity.
    for key in ("rows_128", "two_sample", "spectrum", "diversity"):
        if result.get(key) is not None:
            out[key] = result[key]
    nov = result.get("novelty")
    if nov is not None:
        out["novelty"] = {k: nov[k] for k in ("share_closer", "z_u", "p_value", "flagged_share",
                                              "design_dist_median", "heldout_dist_median")}
    return out


def check_target(bundle_dir: str | Path) -> Bundle:
    """Verify the bundle to record in (before spending minutes on an evaluation, and again before writing).

    Raises:
        UserError: it is not a bundle, or it is damaged.
    """
    from edge.bundle import BundleError, load_bundle

    try:
        return load_bundle(bundle_dir)
    except BundleError as exc:
        raise UserError(f"--record: {exc}") from exc


def record(bundle_dir: str | Path, result: dict[str, Any], command: list[str] | None = None) -> tuple[str, str]:
    """Write `result` (an evaluation of the bundle, or of the run it was exported from) into the bundle's manifest.

    Returns:
        (the key it was recorded under, the bundle's new model ID).

    Raises:
        UserError: the bundle does not verify, or the evaluated model is neither the bundle nor its run.
    """
    from trainer import run_folder

    bundle_dir = Path(bundle_dir)
    bundle = check_target(bundle_dir)
    model = result["model"]
    if model["kind"] == "bundle":
        if Path(model["path"]).resolve() != bundle_dir.resolve():
            raise UserError(f"--record {bundle_dir}: the evaluated bundle is {model['path']}; record a bundle's "
                            "numbers in that bundle (or evaluate its run folder to record the float numbers)")
        if model.get("model_id") != bundle.model_id:
            raise UserError(f"--record: {bundle_dir} changed while it was evaluated; evaluate it again")
        key = bundle.quantization
    elif model["kind"] == "run":
        if model.get("generator") != run_folder.GENERATOR:
            raise UserError("--record: a bundle is exported from a run's generator.keras, not from a snapshot; "
                            "evaluate the run without --snapshot")
        from trainer.portable_paths import portable_training

        training = bundle.manifest.get("training") or {}
        run_config = run_folder.read_config(Path(model["path"]))
        recorded = portable_training(Path(model["path"]), run_config, {})["config"]  # as the exporter records it
        if not isinstance(training, dict) or training.get("config") not in (recorded, run_config):
            raise UserError(f"--record: {bundle_dir} was not exported from {model['path']} (its training config "
                            "differs); record float numbers in a bundle exported from this run")
        key = "float"
    else:
        raise UserError(f"--record: cannot record an evaluation of a {model['kind']!r}")
    manifest = dict(bundle.manifest)  # as verified just now; only top-level keys are replaced
    evaluation = manifest.get("evaluation")
    evaluation = dict(evaluation) if isinstance(evaluation, dict) else {}
    evaluation[key] = summary(result, command)
    manifest["evaluation"] = evaluation
    rewrite_manifest(bundle_dir, manifest, "--record")
    new = check_target(bundle_dir)  # what the kiosk will read: verified, and its new model ID
    log.info("recorded the %s evaluation in %s (model ID %s -> %s)", key, bundle_dir, bundle.model_id, new.model_id)
    return key, new.model_id


def rewrite_manifest(bundle_dir: Path, manifest: dict[str, Any], option: str) -> None:
    """Write a verified bundle's changed manifest in place: the model files are hashed again (`files` is rebuilt by
    `write_manifest`), so the bundle's model ID changes. A failure is a UserError naming `option`."""
    from edge.bundle import BundleError, write_manifest

    manifest = {k: v for k, v in manifest.items() if k != "files"}
    try:
        write_manifest(bundle_dir, manifest)
    except (BundleError, OSError) as exc:
        raise UserError(f"{option}: could not rewrite {bundle_dir / 'manifest.json'}: {exc}") from exc
