"""`write_report(run_dir)`: the paper's Table 2 made real, for the epochs a run kept.

For each kept epoch (`snapshots/epoch-NNNN/generator.keras`; the trainer keeps 1, 10, 50, 100 and the last by
default, `--keep-epochs` for others) the report lists image size, noise size, batch size, training img/s, the
training wall time up to that epoch, FCD, KID, precision and recall against the training photos (with spreads)
and a sample grid, and draws the metrics against epochs. Every epoch is sampled from the same latents (`--seed`),
so the grids show one set of designs maturing. The real-vs-real floor (held-out photos vs training photos) is
the table's last row and the plot's dashed line.

Written to RUN_DIR/report/: report.md, report.html, report.json, metrics.png and samples/epoch-NNNN.png.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from edge.errors import UserError
from trainer import evaluate as ev
from trainer import run_folder

log = logging.getLogger(__name__)

GRID_N = 36  # designs in each epoch's sample grid (6 x 6)
METRICS_PLOT = "metrics.png"


def training_progress(rows: list[dict[str, Any]], batch_size: int) -> dict[int, dict[str, float]]:
    """Per epoch: img/s of that epoch and the training wall time up to its end, from metrics.jsonl rows.

    An epoch's wall time is its images (steps x batch) over its measured img/s — the time `fit()` spent on it,
    without sampling and checkpointing between epochs. A resumed run may log an epoch twice; the last row wins.
    """
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        try:
            by_epoch[int(row["epoch"])] = row
        except (KeyError, TypeError, ValueError):
            continue
    out: dict[int, dict[str, float]] = {}
    wall, prev_step = 0.0, 0
    for epoch in sorted(by_epoch):
        row = by_epoch[epoch]
        step, img_s = int(row.get("step", prev_step)), float(row.get("img_per_s") or 0.0)
        if img_s > 0:
            wall += (step - prev_step) * batch_size / img_s
        prev_step = step
        out[epoch] = {"img_per_s": img_s, "wall_s": wall}
    return out


def _choose_epochs(run_dir: Path, epochs: list[int] | None, summary: dict[str, Any]) -> list[tuple[int, int | None]]:
    """(epoch, snapshot or None for generator.keras) pairs to report."""
    kept = ev.kept_epochs(run_dir)
    if epochs:
        missing = [e for e in epochs if e not in kept]
        if missing:
            raise UserError(f"{run_dir} kept no snapshot of epoch {', '.join(map(str, missing))}; kept: "
                            f"{', '.join(map(str, kept)) or 'none'} (train with --keep-epochs to keep others)")
        return [(e, e) for e in sorted(set(epochs))]
    if kept:
        return [(e, e) for e in kept]
    done = summary.get("epochs_done")
    if not (run_dir / run_folder.GENERATOR).is_file() or not done:
        raise UserError(f"{run_dir} has no epoch snapshots and no generator.keras: train it first")
    log.warning("%s kept no epoch snapshots; reporting generator.keras (epoch %s) only", run_dir, done)
    return [(int(done), None)]


def _data_dir(run_dir: Path, data_dir: str | Path | None, config: dict[str, Any]) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    recorded = config.get("data_dir")
    if not recorded or not Path(recorded).is_dir():
        raise UserError(f"the run's training data folder {recorded or '(not recorded)'} is not here: "
                        "pass --data with the photos to measure against")
    return Path(recorded)


def plot_metrics(rows: list[dict[str, Any]], floor: dict[str, Any], path: Path) -> None:
    """FCD, KID, precision and recall against epochs (error bars: the spreads; dashed: the real-vs-real floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), dpi=100)
    for ax, (key, label, scale) in zip(axes, [("fcd", "FCD", 1.0), ("kid", "KID x 1000", 1000.0),
                                              ("precision", "precision", 1.0), ("recall", "recall", 1.0)],
                                       strict=True):
        values = [r["metrics"][key]["value"] * scale for r in rows]
        spreads = [r["metrics"][key]["spread"] * scale for r in rows]
        ax.errorbar(epochs, values, yerr=spreads, marker="o", capsize=3, label="designs")
        ax.axhline(floor[key]["value"] * scale, linestyle="--", color="grey", label="held-out photos")
        ax.set_xlabel("epoch")
        ax.set_title(label)
        if len(epochs) > 1 and max(epochs) / max(1, min(epochs)) >= 20:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _fmt(est: dict[str, Any] | None, digits: int, scale: float = 1.0) -> str:
    if est is None:
        return "—"
    return f"{est['value'] * scale:.{digits}f} ± {est['spread'] * scale:.{digits}f}"


def _table_cells(row: dict[str, Any], conditional: bool = False) -> list[str]:
    m = row["metrics"]
    img_s = row.get("img_per_s")
    wall = row.get("wall_s")
    return [
        str(row["epoch"]) if row["epoch"] is not None else "—",
        f"{row['size_px']}×{row['size_px']}",
        str(row["z_dim"]),
        str(row["batch_size"]),
        f"{img_s:.1f}" if img_s else "—",
        _duration(wall) if wall is not None else "—",
        _fmt(m["fcd"], 2),
        _fmt(m["kid"], 2, 1000.0),
        _fmt(m["precision"], 3),
        _fmt(m["recall"], 3),
        *([_fmt(row.get("class_accuracy"), 3)] if conditional else []),
        *_realism_cells(row.get("realism") or {}),
    ]


def _realism_cells(r: dict[str, Any]) -> list[str]:
    """FCD in the 128 px space, two-sample accuracy, grid peak and near-duplicate share (— when absent)."""
    test = r.get("two_sample") or {}
    return [
        _fmt(r.get("fcd_128"), 2),
        f"{test['accuracy']:.3f} [{test['ci95'][0]:.2f}, {test['ci95'][1]:.2f}]" if test.get("accuracy") is not None
        else "—",
        f"{r['grid_peak_db']:+.1f}" if r.get("grid_peak_db") is not None else "—",
        f"{r['near_duplicate_share']:.3f}" if r.get("near_duplicate_share") is not None else "—",
    ]


def realism_summary(measured: dict[str, Any]) -> dict[str, Any]:
    """The realism numbers of one `Evaluator.measure` result that the epoch table shows."""
    rows_128 = measured.get("rows_128") or {}
    return {"fcd_128": (rows_128.get("designs") or {}).get("fcd"), "two_sample": measured.get("two_sample"),
            "grid_peak_db": (measured.get("spectrum") or {}).get("grid_peak_db"),
            "spectrum_distance_db": (measured.get("spectrum") or {}).get("spectrum_distance_db"),
            "near_duplicate_share": (measured.get("diversity") or {}).get("near_duplicate_share")}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


HEADERS = ["epoch", "image size", "noise size", "batch size", "img/s", "wall time (training)", "FCD",
           "KID × 1000", "precision", "recall"]
CLASS_HEADER = "class accuracy"  # conditional runs: share of designs classified as the requested class
# What a person sees (trainer.realism): FCD in the 128 px network, the two-sample classifier's accuracy against
# held-out photos (0.5 = indistinguishable), the grid-pattern peak above photos, the near-duplicate share.
REALISM_HEADERS = ["FCD (128 px)", "two-sample acc. [95% CI]", "grid peak dB", "near-duplicates"]


def _headers(report: dict[str, Any]) -> list[str]:
    return [*HEADERS, *([CLASS_HEADER] if report["run"]["conditional"] else []), *REALISM_HEADERS]


def _floor_cells(report: dict[str, Any]) -> list[str]:
    floor = report["floor"]
    cells = ["held-out photos (floor)", *["—"] * 5, _fmt(floor["fcd"], 2), _fmt(floor["kid"], 2, 1000.0),
             _fmt(floor["precision"], 3), _fmt(floor["recall"], 3)]
    if report["run"]["conditional"]:
        cells.append(_fmt(report.get("floor_class_accuracy"), 3))
    floor_128 = report.get("floor_128")
    cells += [_fmt(floor_128["fcd"], 2) if floor_128 else "—", "0.5 (chance)", "0", "≈ 0.05"]
    return [*cells, ""]


def _markdown(report: dict[str, Any]) -> str:
    run, data = report["run"], report["data"]
    lines = [
        f"# Epoch report: {run['path']}",
        "",
        f"Preset `{run['preset']}`, {run['size_px']} px, z = {run['z_dim']} ({run['z_distribution']}), "
        f"batch {run['batch_size']}, {run['epochs_done']} epochs trained"
        + (f", class-conditional ({', '.join(run['class_names'])})" if run["conditional"] else "") + ".",
        f"Command: `{' '.join(run['command']) or '(not recorded)'}`",
        "",
        f"Measured with {report['n']} designs per epoch (seed {report['seed']}, the same latents every epoch) "
        f"against {data['n_train']} training photos of {', '.join(data['classes'])}; held-out photos: "
        f"{data['n_heldout']}, {data['heldout']}. Feature network: {report['features']['feature_dim']}-d garment "
        f"classifier (validation accuracy {report['features']['val_accuracy']}).",
        "",
        "| " + " | ".join([*_headers(report), "samples"]) + " |",
        "|" + "---|" * (len(_headers(report)) + 1),
    ]
    conditional = report["run"]["conditional"]
    for row in report["epochs"]:
        cells = _table_cells(row, conditional)
        lines.append("| " + " | ".join([*cells, f"![epoch {row['epoch']}]({row['grid']})"]) + " |")
    floor = report["floor"]
    floor_cells = _floor_cells(report)
    lines.append("| " + " | ".join(floor_cells) + " |")
    lines += [
        "",
        "± : FCD bootstrap std; KID std over subsets; precision/recall std over half-size subsets. FCD is biased "
        f"at small n: the floor uses {floor['n']} held-out photos, the designs {report['n']}.",
        "Wall time: the training time (`fit()`) up to the end of that epoch, from metrics.jsonl.",
        "",
        f"![metrics against epochs]({METRICS_PLOT})",
        "",
        "## Sample grids",
        "",
    ]
    for row in report["epochs"]:
        lines += [f"### Epoch {row['epoch']}", "", f"![epoch {row['epoch']}]({row['grid']})", ""]
    return "\n".join(lines)


def _html(report: dict[str, Any]) -> str:
    e = html.escape
    run, data = report["run"], report["data"]
    head = "".join(f"<th>{e(h)}</th>" for h in [*_headers(report), "samples"])
    body = []
    for row in report["epochs"]:
        cells = "".join(f"<td>{e(c)}</td>" for c in _table_cells(row, report["run"]["conditional"]))
        body.append(f"<tr>{cells}<td><img src=\"{e(row['grid'])}\" width=\"160\" alt=\"epoch {row['epoch']}\">"
                    "</td></tr>")
    body.append("<tr class=\"floor\">" + "".join(f"<td>{e(c)}</td>" for c in _floor_cells(report)) + "</tr>")
    grids = "".join(f"<figure><img src=\"{e(r['grid'])}\" alt=\"epoch {r['epoch']}\"><figcaption>epoch "
                    f"{r['epoch']}</figcaption></figure>" for r in report["epochs"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Epoch report: {e(run['path'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}tr.floor{{background:#f3f3f3}}
figure{{display:inline-block;margin:0 1em 1em 0}}img{{image-rendering:pixelated}}</style></head><body>
<h1>Epoch report: {e(run['path'])}</h1>
<p>Preset <code>{e(run['preset'])}</code>, {run['size_px']} px, z = {run['z_dim']} ({e(run['z_distribution'])}),
batch {run['batch_size']}, {run['epochs_done']} epochs trained.
Command: <code>{e(' '.join(run['command']) or '(not recorded)')}</code></p>
<p>{report['n']} designs per epoch (seed {report['seed']}, the same latents every epoch) against
{data['n_train']} training photos of {e(', '.join(data['classes']))}; held-out photos: {data['n_heldout']},
{e(data['heldout'])}. Feature network: {report['features']['feature_dim']}-d garment classifier (validation accuracy
{report['features']['val_accuracy']}).</p>
<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<p>± : FCD bootstrap std; KID std over subsets; precision/recall std over half-size subsets. Wall time: the
training time up to the end of that epoch.</p>
<p><img src="{METRICS_PLOT}" alt="metrics against epochs"></p>
<h2>Sample grids</h2>{grids}
</body></html>
"""


def write_report(run_dir: str | Path, *, data_dir: str | Path | None = None, n: int = 500, seed: int = 0,
                 epochs: list[int] | None = None, out_dir: str | Path | None = None,
                 features_dir: str | Path | None = None) -> dict[str, Path]:
    """Measure the run's kept epochs and write the report (Markdown, HTML, JSON, plot, grids).

    Args:
        run_dir: a run folder made by `atelier train`.
        data_dir: real photos (default: the run's recorded training folder).
        n: designs per epoch.
        seed: latent seed (the same latents for every epoch).
        epochs: the kept epochs to include (default: all of them).
        out_dir: report folder (default RUN_DIR/report).
        features_dir: feature network folder (default: the shipped one).

    Returns:
        {"markdown", "html", "json", "plot"} paths.
    """
    from trainer.features import DEFAULT_DIR_128, load_feature_net

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder: give a run folder made by `atelier train`")
    if n < ev.MIN_PHOTOS:
        raise UserError(f"--n must be at least {ev.MIN_PHOTOS}, got {n}")
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    config = run_folder.read_config(run_dir)
    summary = run_folder.read_summary(run_dir)
    chosen = _choose_epochs(run_dir, epochs, summary)
    real_dir = _data_dir(run_dir, data_dir, config)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report")

    features = load_feature_net(features_dir)
    features_128 = load_feature_net(DEFAULT_DIR_128) if DEFAULT_DIR_128.is_dir() else None
    first = ev.open_run(run_dir, chosen[0][1])
    classes = ev.requested_classes(first, None)
    real = ev.load_real(real_dir, first.size_px, classes, first.crop)
    evaluator = ev.Evaluator(features, real, seed=seed, features_128=features_128)
    progress = training_progress(run_folder.read_metrics(run_dir), int(config.get("batch_size", 0)))
    (out / "samples").mkdir(parents=True, exist_ok=True)
    rows = []
    floor_class_accuracy = None
    for epoch, snapshot in chosen:
        log.info("epoch %d: %d designs", epoch, n)
        model = first if snapshot == chosen[0][1] else ev.open_run(run_dir, snapshot)
        designs, requested = ev.make_designs(model, n, seed, classes)
        measured = evaluator.measure(designs, requested, novelty=False)
        if measured["class_accuracy"] is not None:
            floor_class_accuracy = measured["class_accuracy"]["heldout"]
        grid_rel = f"samples/epoch-{epoch:04d}.png"
        shown = designs[:GRID_N]
        run_folder.write_png(out / grid_rel, run_folder.grid_image(shown, cols=math.ceil(math.sqrt(len(shown)))))
        rows.append({
            "epoch": epoch,
            "generator": ev.snapshot_path(snapshot) if snapshot is not None else run_folder.GENERATOR,
            "size_px": int(config["size_px"]),
            "z_dim": int(config["z_dim"]),
            "batch_size": int(config.get("batch_size", 0)),
            "img_per_s": progress.get(epoch, {}).get("img_per_s"),
            "wall_s": progress.get(epoch, {}).get("wall_s"),
            "metrics": measured["rows"]["designs"],
            # The designs again at the floor's sample size (FCD is biased at small n), when n is larger.
            "metrics_matched": measured["rows"].get("designs_matched"),
            "class_accuracy": (measured["class_accuracy"] or {}).get("designs"),
            "realism": realism_summary(measured),
            "grid": grid_rel,
        })
    report = {
        "run": {"path": str(run_dir), "preset": config.get("preset"), "size_px": int(config["size_px"]),
                "z_dim": int(config["z_dim"]), "z_distribution": config.get("z_distribution"),
                "batch_size": int(config.get("batch_size", 0)), "conditional": bool(config.get("conditional")),
                "class_names": config.get("class_names") or [], "epochs_done": summary.get("epochs_done"),
                "img_per_s": summary.get("img_per_s"), "wall_s": summary.get("wall_s"),
                "command": list(summary.get("command") or [])},
        "data": {"dir": str(real_dir), "classes": real.class_names, "n_train": len(real.train),
                 "n_heldout": len(real.heldout), "heldout": real.split},
        "features": {"sha256": features.card.get("sha256"), "val_accuracy": features.card.get("val_accuracy"),
                     "feature_dim": features.feature_dim},
        "n": n,
        "seed": seed,
        "epochs": rows,
        "floor": evaluator.floor(),
        "floor_128": ((measured.get("rows_128") or {}).get("heldout")) if rows else None,
        "floor_class_accuracy": floor_class_accuracy,
    }
    paths = {"markdown": out / "report.md", "html": out / "report.html", "json": out / "report.json",
             "plot": out / METRICS_PLOT}
    plot_metrics(rows, report["floor"], paths["plot"])
    paths["markdown"].write_text(_markdown(report) + "\n")
    paths["html"].write_text(_html(report))
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    log.info("report for %d epochs -> %s", len(rows), out)
    return paths
