"""How well a bundle's inspire encoder designs from photos it never saw (`atelier evaluate-encoder`).

Everything runs as the kiosk runs it: the int8 encoder through `edge.inspire.PhotoEncoder` (photo -> the one
preprocessing path -> z, class), the int8 generator through `edge.designs.DesignGenerator`. On the held-out photos
(the dataset's `validation/` split, the bundle's classes), in the garment feature network's space:

- feature distance photo -> its reconstruction, against photo -> random designs (the mean over N designs from
  the prior; ratio < 1 means the reconstruction is nearer the photo than a random design is), and against the
  nearest of those N random designs (what a search over N designs would find at best);
- mean colour error: the distance between the photo's mean RGB and the design's (0-255 units), reconstruction
  against random designs;
- the variations: the same feature distance at each radius (they should move away from the photo gently);
- class agreement (conditional bundles): the encoder's class against the photo's folder;
- the same distances for the kiosk's search (`edge.inspire_refine`: the encoder's latent refined against the
  photo, what `POST /api/inspire` serves), beside the encoder alone.

A picture: for a few held-out photos, photo | reconstruction | the variations, one row each.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import load_bundle
from edge.designs import DesignGenerator
from edge.errors import UserError
from edge.inspire import VARIATION_RADII_MILLI, Encoding, PhotoEncoder, inspired_ids
from edge.inspire_refine import Refined, make_catalogue, refine
from edge.kernels import postprocess
from edge.kiosk.latents import LatentResolver

log = logging.getLogger(__name__)

N_RANDOM = 1000
RANDOM_SEED = 0
PICTURE_ROWS = 8


def _designs(gen: DesignGenerator, resolver: LatentResolver, ids: list) -> np.ndarray:
    z = resolver.vectors([d.latent for d in ids])
    classes = None if gen.bundle.class_names is None else [int(d.class_id or 0) for d in ids]
    return gen.generate(z, classes)


def _mean_rgb(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1, 3).astype(np.float64).mean(axis=1)


def _searched(gen: DesignGenerator, encoder: PhotoEncoder, photos: np.ndarray,
              encodings: list[Encoding]) -> list[Refined]:
    """Each encoding refined by the kiosk's search against its photo (as the encoder saw it)."""
    bundle, spec = gen.bundle, encoder.entry.input
    catalogues: dict[int | None, np.ndarray] = {}
    out = []
    for photo, encoding in zip(photos, encodings, strict=True):
        cls = encoding.class_id
        classes = None if cls is None else [cls]

        def generate(z: np.ndarray, classes: list[int] | None = classes) -> np.ndarray:
            return gen.generate(z, None if classes is None else classes * len(z))

        if cls not in catalogues:
            catalogues[cls] = make_catalogue(generate, bundle.z_dim, bundle.z_distribution)
        crop = encoder.model_input(np.ascontiguousarray(photo[:, :, ::-1]))
        target = postprocess(crop[None], scale=spec.scale, zero_point=spec.zero_point)[0] \
            if spec.scale is not None else postprocess(crop[None].astype(np.float32))[0]
        out.append(refine(encoding, target, bundle.z_distribution, generate, catalogues[cls]))
    return out


def evaluate_encoder(bundle_dir: str | Path, data_dir: str | Path, *, features: str | Path | None = None,
                     n_random: int = N_RANDOM) -> tuple[dict[str, Any], np.ndarray]:
    """Measure the bundle's encoder on held-out photos; returns (report, picture RGB uint8)."""
    from trainer.eval_photos import load_real
    from trainer.feature_distances import pairwise_distances
    from trainer.features import load_feature_net

    bundle = load_bundle(bundle_dir)
    if bundle.encoder is None:
        raise UserError(f"{bundle_dir} has no usable encoder ({bundle.encoder_error or 'none exported'}): "
                        "run `atelier train-encoder` first")
    classes = list(bundle.class_names) if bundle.class_names else \
        list((bundle.manifest.get("training") or {}).get("config", {}).get("class_names") or []) or None
    real = load_real(data_dir, bundle.size_px, classes)
    photos, labels = real.heldout, real.heldout_labels
    encoder = PhotoEncoder(bundle, num_threads=2)
    gen = DesignGenerator(bundle, batch=max(bundle.batches), num_threads=2)
    resolver = LatentResolver(gen.sample_latents, bundle.z_distribution)
    encodings = [encoder.encode_input(encoder.model_input(np.ascontiguousarray(p[:, :, ::-1]))) for p in photos]
    all_ids = [inspired_ids(bundle, e) for e in encodings]
    recon = _designs(gen, resolver, [ids[0] for ids in all_ids])
    refined = _searched(gen, encoder, photos, encodings)
    searched = _designs(gen, resolver, [inspired_ids(bundle, r.encoding, 1)[0] for r in refined])
    variations = _designs(gen, resolver, [d for ids in all_ids for d in ids[1:]]).reshape(
        len(photos), len(VARIATION_RADII_MILLI), *recon.shape[1:])
    z_random = gen.sample_latents(n_random, RANDOM_SEED)
    random_classes = None if bundle.class_names is None else np.arange(n_random) % len(bundle.class_names)
    random = gen.generate(z_random, random_classes)

    net = load_feature_net(features)
    f_photo, _ = net(photos)
    f_recon, p_recon = net(recon)
    f_searched, _ = net(searched)
    d_searched = np.linalg.norm(f_photo - f_searched, axis=1)
    f_random, _ = net(random)
    d_recon = np.linalg.norm(f_photo - f_recon, axis=1)
    d_random = pairwise_distances(f_photo, f_random)  # (photos, random designs)
    d_var = [np.linalg.norm(f_photo - net(variations[:, k])[0], axis=1) for k in range(len(VARIATION_RADII_MILLI))]
    c_photo, c_recon, c_random = _mean_rgb(photos), _mean_rgb(recon), _mean_rgb(random)
    colour_recon = np.linalg.norm(c_photo - c_recon, axis=1)
    colour_searched = np.linalg.norm(c_photo - _mean_rgb(searched), axis=1)
    colour_random = np.linalg.norm(c_photo[:, None] - c_random[None], axis=2).mean(axis=1)
    report: dict[str, Any] = {
        "bundle": str(bundle_dir), "model_id": bundle.model_id, "n_photos": len(photos), "heldout": real.split,
        "n_random": n_random, "features_sha256": net.card.get("sha256"),
        "feature_distance": {
            "reconstruction": round(float(d_recon.mean()), 4),
            "random_mean": round(float(d_random.mean()), 4),
            "random_nearest_of_n": round(float(d_random.min(axis=1).mean()), 4),
            "ratio_to_random": round(float(d_recon.mean() / d_random.mean()), 4),
            "ratio_to_nearest_random": round(float(d_recon.mean() / d_random.min(axis=1).mean()), 4),
            "share_nearer_than_random_mean": round(float(np.mean(d_recon < d_random.mean(axis=1))), 4),
            "searched": round(float(d_searched.mean()), 4),
            "searched_ratio_to_random": round(float(d_searched.mean() / d_random.mean()), 4),
            "search_ran_share": round(float(np.mean([r.searched for r in refined])), 4),
            "variations": {str(r): round(float(d.mean()), 4) for r, d in zip(VARIATION_RADII_MILLI, d_var,
                                                                               strict=True)},
        },
        "colour_error": {
            "reconstruction": round(float(colour_recon.mean()), 2),
            "random_mean": round(float(colour_random.mean()), 2),
            "ratio_to_random": round(float(colour_recon.mean() / colour_random.mean()), 4),
            "searched": round(float(colour_searched.mean()), 2),
        },
    }
    if bundle.class_names is not None:
        names = list(bundle.class_names)
        want = np.asarray([names.index(real.class_names[i]) if real.class_names[i] in names else -1 for i in labels])
        got = np.asarray([e.class_id for e in encodings])
        report["class_agreement"] = round(float(np.mean(got == want)), 4)
        agree = [net.class_index(names[i]) for i in want]
        report["reconstruction_classified_as_photo_class"] = round(float(np.mean(
            [a is not None and int(np.argmax(p)) == a for a, p in zip(agree, p_recon, strict=True)])), 4)
    order = np.argsort(d_recon)
    pick = order[np.linspace(0, len(order) - 1, min(PICTURE_ROWS, len(order))).round().astype(int)]
    return report, _picture(photos[pick], recon[pick], variations[pick])


def _picture(photos: np.ndarray, recon: np.ndarray, variations: np.ndarray) -> np.ndarray:
    """One row per photo: photo | reconstruction | variations (nearest radius first)."""
    from edge.kernels import tile

    rows = [np.concatenate([p[None], r[None], v]) for p, r, v in zip(photos, recon, variations, strict=True)]
    cells = np.concatenate(rows)
    return tile(np.ascontiguousarray(cells), cols=2 + variations.shape[1], pad=4, background=255)


def format_report(report: dict[str, Any]) -> str:
    fd, colour = report["feature_distance"], report["colour_error"]
    lines = [
        f"held-out photos: {report['n_photos']} ({report['heldout']}); random designs: {report['n_random']}",
        "| | feature distance to the photo | mean colour error |",
        "| --- | --- | --- |",
        f"| reconstruction (encoder alone) | {fd['reconstruction']:.3f} | {colour['reconstruction']:.1f} |",
        f"| reconstruction after the kiosk's search (it ran for {fd['search_ran_share']:.0%} of the photos) "
        f"| {fd['searched']:.3f} | {colour['searched']:.1f} |",
        f"| random design (mean) | {fd['random_mean']:.3f} | {colour['random_mean']:.1f} |",
        f"| nearest of {report['n_random']} random designs | {fd['random_nearest_of_n']:.3f} | |",
        f"| ratio reconstruction / random | {fd['ratio_to_random']:.3f} | {colour['ratio_to_random']:.3f} |",
        "variations (feature distance by radius): "
        + ", ".join(f"{int(r) / 1000:g}: {d:.3f}" for r, d in fd["variations"].items()),
    ]
    if "class_agreement" in report:
        lines.append(f"class agreement: {report['class_agreement']:.3f}")
    return "\n".join(lines)
