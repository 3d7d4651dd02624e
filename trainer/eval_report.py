"""How an evaluation is shown: the contact sheet of closest design/photo pairs and the text table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainer import feature_distances as fd


def contact_sheet(designs: np.ndarray, train: np.ndarray, closest: list[dict[str, Any]], cols: int = 4) -> np.ndarray:
    """Design | nearest training photo pairs, closest first, captioned with the distance (red when flagged)."""
    from PIL import Image, ImageDraw, ImageFont

    size = designs.shape[1]
    scale = max(1, math.ceil(96 / size))  # at least 96 px per picture, integer nearest-neighbour zoom
    cell = size * scale
    gap, caption, title = 4, 16, 22
    pair_w = 2 * cell + gap
    rows = max(1, math.ceil(len(closest) / cols))
    width = cols * pair_w + (cols + 1) * 3 * gap
    height = title + rows * (cell + caption + 2 * gap) + gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((3 * gap, 4), "design | nearest training photo (closest first; red: closer than 95% of held-out "
                            "photos)", fill=(0, 0, 0), font=font)
    for k, item in enumerate(closest):
        r, c = divmod(k, cols)
        x = 3 * gap + c * (pair_w + 3 * gap)
        y = title + r * (cell + caption + 2 * gap)
        for j, img in enumerate((designs[item["design"]], train[item["train_index"]])):
            tile = Image.fromarray(img).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (x + j * (cell + gap), y))
        colour = (200, 0, 0) if item["flagged"] else (60, 60, 60)
        if item["flagged"]:
            draw.rectangle((x - 2, y - 2, x + pair_w + 1, y + cell + 1), outline=colour, width=2)
        draw.text((x, y + cell + 2), f"#{item['design']}  d = {item['distance']:.2f}", fill=colour, font=font)
    return np.asarray(sheet)




def _cell(est: dict[str, Any] | None, digits: int = 3, scale: float = 1.0) -> str:
    if est is None:
        return "—"
    return fd.Estimate(est["value"], est["spread"], est["spread_kind"]).format(digits, scale)


def format_table(result: dict[str, Any]) -> str:
    """The evaluation as a readable text table (what `atelier evaluate` prints)."""
    model, data, latents = result["model"], result["data"], result.get("latents")
    drawn = (f"{latents['n']} designs, seed {latents['seed']}" if latents else
             f"{model.get('used')} images ({model.get('skipped_count', 0)} files skipped, "
             f"{model.get('resized', 0)} resized, {model.get('converted_to_rgb', 0)} converted to RGB)")
    lines = [
        f"{model['kind']} {model['path']}" + (f" (epoch {model['epoch']})" if model.get("epoch") else "")
        + f" — {data['size_px']} px, {drawn}",
        f"real photos: {data['n_train']} training, {data['n_heldout']} held-out ({data['heldout']}); "
        f"classes {', '.join(data['classes'])}",
        f"feature network: {result['features']['feature_dim']}-d, validation accuracy "
        f"{result['features']['val_accuracy']}",
        "",
        f"{'vs the training photos':<30} {'n':>5}  {'FCD':>17}  {'KID x 1000':>15}  {'precision':>13}  "
        f"{'recall':>13}",
    ]
    names = {"designs": "designs", "designs_matched": "designs (n matched)",
             "heldout": "held-out photos (floor)", "heldout_matched": "held-out photos (n matched)"}
    def table_line(name: str, row: dict[str, Any]) -> str:
        return (f"{name:<30} {row['n']:>5}  {_cell(row['fcd'], 2):>17}  {_cell(row['kid'], 2, 1000):>15}  "
                f"{_cell(row['precision']):>13}  {_cell(row['recall']):>13}")

    for key in ("designs", "designs_matched", "heldout", "heldout_matched"):
        row = result["rows"].get(key)
        if row is not None:
            lines.append(table_line(names[key], row))
    held = [("designs_vs_heldout", "designs"), ("train_vs_heldout", "training photos (floor)")]
    if all(k in result["rows"] for k, _ in held):
        lines.append(f"{'vs the held-out photos':<30}")
        lines.extend(table_line(name, result["rows"][key]) for key, name in held)
    rows_128 = result.get("rows_128")
    if rows_128:
        lines.append(f"{'128 px feature network':<30}")
        lines.extend(table_line(name, rows_128[key]) for key, name in
                     (("designs", "designs vs training photos"), ("heldout", "held-out photos (floor)"),
                      ("designs_vs_heldout", "designs vs held-out photos")))
    lines.append("(± : FCD bootstrap std; KID std over subsets; precision/recall std over half-size subsets)")
    lines.extend(realism_lines(result))
    acc = result.get("class_accuracy")
    if acc is not None:
        per = ", ".join(f"{k} {v['value']:.2f}" for k, v in acc["per_class"].items())
        lines.append("")
        lines.append(f"class accuracy (designs the classifier puts in the requested class): {_cell(acc['designs'])}"
                     f" ({per or 'no class the classifier knows'}); held-out photos {_cell(acc['heldout'])}")
        ratio = acc.get("share_of_heldout_accuracy") or {}
        if ratio:
            lines.append("  per class, designs' share / held-out photos' accuracy (goal >= 0.6): "
                         + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
        if acc["unknown_classes"]:
            lines.append(f"  not measured (the classifier lacks them): {', '.join(acc['unknown_classes'])}")
    nov = result.get("novelty")
    if nov is not None:
        lines.append("")
        lines.append(f"novelty: median distance to the nearest training photo {_cell(nov['design_dist_median'], 2)} "
                     f"(held-out photos {_cell(nov['heldout_dist_median'], 2)})")
        lines.append(f"  designs closer to a training photo than held-out photos are: "
                     f"{_cell(nov['share_closer'])} (0.5 = like new photos; near 1 = copying); "
                     f"Z_U {nov['z_u']:.2f}, p {nov['p_value']:.3g}")
        lines.append(f"  {len(nov['flagged'])} designs ({_cell(nov['flagged_share'])} of them) closer than "
                     f"{100 - nov['percentile']:.0f}% of held-out photos (about {nov['percentile']:.0f}% expected "
                     "without copying)")
        if data.get("heldout_seen_in_training"):
            lines.append("  warning: the held-out photos were in the model's training folder; use a dataset with "
                         "validation/ for a real copying test")
    lines.append("")
    lines.append("wrote " + ", ".join(result["files"].values()))
    return "\n".join(lines)



def realism_lines(result: dict[str, Any]) -> list[str]:
    """The two-sample test, spectrum artefacts and diversity, as table lines."""
    lines: list[str] = []
    test, spec, div = result.get("two_sample"), result.get("spectrum"), result.get("diversity")
    if test:
        lines.append("")
        if test.get("accuracy") is None:
            lines.append(f"two-sample test: not run ({test.get('reason')})")
        else:
            lo, hi = test["ci95"]
            lines.append(f"two-sample test (a classifier telling designs from held-out photos; 0.5 = "
                         f"indistinguishable): accuracy {test['accuracy']:.3f} (95% CI {lo:.3f}..{hi:.3f}, "
                         f"{test['n_per_side']} per side, p {test['p_value']:.2g}) on {test['looks_at']}")
    if spec:
        lines.append(f"artefacts: spectrum distance {spec['spectrum_distance_db']:.2f} dB (high frequencies "
                     f"{spec['high_frequency_gap_db']:+.2f} dB against photos); grid peak "
                     f"{spec['grid_peak_db']:+.2f} dB above photos")
    if div:
        ratio = div["pairwise_distance_ratio"]
        lines.append(f"diversity: near-duplicates {div['near_duplicate_share']:.3f} (photos about 0.05); mean "
                     f"pairwise feature distance {ratio:.2f} x the photos'" if ratio is not None else
                     f"diversity: near-duplicates {div['near_duplicate_share']:.3f}")
    return lines
