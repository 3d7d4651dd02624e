"""Design from my garment, refined: a short search around the encoder's latent for a design nearer the picture.

The encoder's guess is a good start but not the best the generator can do for the picture (its colours above all:
the encoder learned from the generator's own designs). The kiosk therefore draws candidates and keeps the one
whose design is most like the encoder's input crop, all with the int8 generator the kiosk already runs:

0. the encoder's own design alone: when its central colour is within COLOUR_MISS_RGB of the picture's, the
   encoder's latent is kept and nothing more is made;
1. the encoder's latent, LOCAL_PER_ROUND - 1 latents around it at radius ROUNDS[0], and the CATALOGUE_PICKS
   designs of the model's catalogue most like the picture (a wide net for garments the encoder misreads);
2. the best of those and LOCAL_PER_ROUND - 1 latents around it at radius ROUNDS[1].

The catalogue is CATALOGUE_SIZE fixed prior draws made once per model (and class), kept only as 16 x 16
pictures (3 KB a design), so picking from it costs no generator call: the search makes 1 design a picture when
the encoder has the colour, else 1 + 2 x LOCAL_PER_ROUND + CATALOGUE_PICKS.

"Most like" is `likeness_distance`: both pictures area-averaged to 16 x 16, a centre-weighted squared pixel
error (the garment sits in the middle; the backdrop matters less) plus the squared error of the central colour,
weighted COLOUR_WEIGHT (a shopper judges by colour first). The candidates are seeded by the crop's own bytes, so
one picture always gives the same designs. `bench/inspire.py` and `atelier evaluate-encoder` measure what the
search buys (likeness, colour error) and what it costs (ms).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from edge.designs import sample_prior
from edge.inspire import Encoding, project_to_prior

ROUNDS: tuple[float, ...] = (0.8, 0.4)  # search radius of each round, in prior std devs
LOCAL_PER_ROUND = 8  # candidates per round: the best so far and 7 around it
CATALOGUE_SIZE = 256  # fixed prior draws per model (and class), made once
CATALOGUE_PICKS = 8  # the catalogue's designs most like the picture, added to the first round
CATALOGUE_SEED = 20_251_202
# The search steps in only when the encoder's design misses the picture's central colour by more than this (RGB
# units, 0-255). On real photos the encoder is near already and the pixel-likeness search buys nothing: it runs
# for 40 % of the held-out t-shirts and costs 4 % in feature distance (atelier evaluate-encoder; at 25 it runs
# for 68 % and costs 10 %). On a flat, cartoon-like picture the encoder misses the colour (error 164) and the
# search brings it to 114 (bench/inspire.py).
COLOUR_MISS_RGB = 40.0
SMALL_PX = 16
COLOUR_WEIGHT = 3.0
CENTRE_SIGMA = 0.3  # the centre weight's std dev, as a share of the side


@dataclass(frozen=True)
class Refined:
    """The encoding with the search's best latent, and the search's scores."""

    encoding: Encoding
    start_distance: float  # likeness_distance of the encoder's own latent
    distance: float  # of the latent kept
    candidates: int  # designs made
    searched: bool  # False: the encoder's design had the picture's colour, its latent is kept


def _centre_weight() -> np.ndarray:
    c = (SMALL_PX - 1) / 2.0
    yy, xx = np.mgrid[0:SMALL_PX, 0:SMALL_PX]
    w = np.exp(-(((yy - c) / SMALL_PX) ** 2 + ((xx - c) / SMALL_PX) ** 2) / (2 * CENTRE_SIGMA**2))
    return (w / w.sum())[..., None]


_WEIGHT = _centre_weight()


SMALL_CHUNK = 16  # pictures converted at a time: the catalogue's 256 as float64 at once would be 100 MB


def small_pictures(images: np.ndarray) -> np.ndarray:
    """(n, s, s, 3) uint8 -> (n, 16, 16, 3) float64 area means (s a multiple of 16), a few pictures at a time."""
    n, s = images.shape[0], images.shape[1]
    f = s // SMALL_PX
    out = np.empty((n, SMALL_PX, SMALL_PX, 3), np.float64)
    for i in range(0, n, SMALL_CHUNK):
        chunk = images[i : i + SMALL_CHUNK].astype(np.float32).reshape(-1, SMALL_PX, f, SMALL_PX, f, 3)
        out[i : i + SMALL_CHUNK] = chunk.mean(axis=(2, 4), dtype=np.float64)
    return out


def likeness_distance(designs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """How unlike `target` (s, s, 3) uint8 each of `designs` (n, s, s, 3) uint8 is; lower is more alike.

    Raises:
        ValueError: the pictures are not square RGB of one side that 16 divides.
    """
    if designs.ndim != 4 or target.shape != designs.shape[1:] or target.shape[2] != 3 \
            or target.shape[0] != target.shape[1] or target.shape[0] % SMALL_PX:
        raise ValueError(f"designs {designs.shape} and target {target.shape} must be square RGB, side a multiple "
                         f"of {SMALL_PX}")
    pixel, colour = _parts(small_pictures(designs), small_pictures(target[None]))
    return pixel + COLOUR_WEIGHT * colour


def _parts(d: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre-weighted squared pixel error, squared central-colour error) of 16 x 16 pictures d (n, 16, 16, 3)
    to t (1, 16, 16, 3)."""
    d, t = d.astype(np.float64), t.astype(np.float64)
    pixel = (_WEIGHT * (d - t) ** 2).sum(axis=(1, 2, 3))
    q = SMALL_PX // 4
    centre = lambda x: x[:, q : SMALL_PX - q, q : SMALL_PX - q].mean(axis=(1, 2))  # noqa: E731
    return pixel, ((centre(d) - centre(t)) ** 2).sum(axis=1)


# A step of "one prior std dev": N(0, 1) has std 1, U(-1, 1) has std 1/sqrt(3) (as edge.kiosk.latents moves them).
_STEP_SCALE = {"normal": 1.0, "uniform": 1.0 / np.sqrt(3.0)}


def _on_prior(z: np.ndarray, distribution: str) -> np.ndarray:
    """A moved latent back on the prior: the N(0, I) typical sphere, or the U(-1, 1) box."""
    if distribution == "uniform":
        return np.clip(z, -1.0, 1.0).astype(np.float32)
    return project_to_prior(z, distribution)


def _seed_of(target: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(target).tobytes(), digest_size=8).digest(), "little")


def catalogue_latents(z_dim: int, distribution: str) -> np.ndarray:
    """The catalogue's latents (CATALOGUE_SIZE, z_dim): the same for every model of that prior."""
    return sample_prior(CATALOGUE_SIZE, z_dim, distribution, CATALOGUE_SEED)


def make_catalogue(generate: Callable[[np.ndarray], np.ndarray], z_dim: int, distribution: str) -> np.ndarray:
    """The catalogue for one model (and class): `small_pictures` (float32) of `generate(catalogue_latents(...))`."""
    return small_pictures(generate(catalogue_latents(z_dim, distribution))).astype(np.float32)


class Search:
    """The search's state between rounds: `candidates()` gives a round's latents, `take()` their designs'
    `small_pictures`. After the first round it ends early, keeping the encoder's latent, when the encoder's design
    already has the picture's colour (COLOUR_MISS_RGB).

    Args:
        encoding: the encoder's output for the picture.
        target: the encoder's input crop as RGB uint8 (size x size x 3); seeds the search.
        distribution: the bundle's prior ("normal" or "uniform").
        catalogue: `small_pictures` of the designs of `catalogue_latents` (for the class searched), or None to
            search around the encoder's latent alone.
    """

    def __init__(self, encoding: Encoding, target: np.ndarray, distribution: str,
                 catalogue: np.ndarray | None = None) -> None:
        self.encoding, self.distribution = encoding, distribution
        self.z_dim = encoding.z.shape[0]
        self.target = small_pictures(target[None])
        self.picks = np.zeros((0, self.z_dim), np.float32)
        if catalogue is not None:
            if catalogue.shape != (CATALOGUE_SIZE, SMALL_PX, SMALL_PX, 3):
                raise ValueError(f"a catalogue is {CATALOGUE_SIZE} pictures of 16 x 16, got {catalogue.shape}")
            pixel, colour = _parts(catalogue, self.target)
            order = np.argsort(pixel + COLOUR_WEIGHT * colour, kind="stable")
            self.picks = catalogue_latents(self.z_dim, distribution)[order[:CATALOGUE_PICKS]]
        self.rng = np.random.default_rng(_seed_of(target))
        self.best = encoding.z.astype(np.float32)
        self.round = -1  # -1: the check (the encoder's own design alone), then the rounds
        self.start = self.best_distance = float("nan")
        self.made = 0
        self.start_colour_error = float("nan")  # RGB units: the encoder's design's central colour to the picture's
        self.searched = False  # whether the search ran past the check (the encoder missed the colour)

    @property
    def done(self) -> bool:
        return self.round >= len(ROUNDS)

    def candidates(self) -> np.ndarray:
        """This round's latents (n, z_dim) float32: the best so far first (the check: the encoder's alone)."""
        if self.round < 0:
            self._candidates = self.best[None].copy()
            return self._candidates
        step = self.rng.standard_normal((LOCAL_PER_ROUND - 1, self.z_dim)) * _STEP_SCALE[self.distribution]
        local = [_on_prior(self.best + ROUNDS[self.round] * s, self.distribution) for s in step]
        picks = list(self.picks) if self.round == 0 else []
        self._candidates = np.stack([self.best, *local, *picks]).astype(np.float32)
        return self._candidates

    def take(self, smalls: np.ndarray) -> None:
        """The `small_pictures` (n, 16, 16, 3) of the designs of this round's candidates, in order."""
        smalls = np.asarray(smalls)
        if smalls.shape != (len(self._candidates), SMALL_PX, SMALL_PX, 3) or not np.isfinite(smalls).all():
            raise ValueError(f"expected {len(self._candidates)} finite 16 x 16 pictures, got {smalls.shape}")
        pixel, colour = _parts(smalls, self.target)
        distances = pixel + COLOUR_WEIGHT * colour
        if self.round < 0:
            self.start = self.best_distance = float(distances[0])
            self.start_colour_error = float(np.sqrt(colour[0]))
            self.searched = self.start_colour_error > COLOUR_MISS_RGB
            self.made += 1
            # The encoder has the colour: keep its latent; else the rounds.
            self.round = 0 if self.searched else len(ROUNDS)
            return
        k = int(np.argmin(distances))
        self.best, self.best_distance = self._candidates[k], float(distances[k])
        self.made += len(smalls)
        self.round += 1

    def result(self) -> Refined:
        """The encoding to design from: the search's best latent if it ran, else the encoder's own."""
        if not self.searched:
            return Refined(self.encoding, self.start, self.start, self.made, False)
        return Refined(replace(self.encoding, z=self.best), self.start, self.best_distance, self.made, True)


def refine(encoding: Encoding, target: np.ndarray, distribution: str,
           draw: Callable[[np.ndarray], np.ndarray], catalogue: np.ndarray | None = None) -> Refined:
    """Search around `encoding.z` for the latent whose design is most like `target`.

    Args:
        encoding: the encoder's output for the picture.
        target, distribution: as for `Search`.
        draw: latents (n, z_dim) float32 -> their designs (n, size, size, 3) uint8. The kiosk runs the rounds
            itself through its generation worker (`edge.kiosk.inspire_desk`).
        catalogue: as for `Search`.
    """
    search = Search(encoding, target, distribution, catalogue)
    while not search.done:
        search.take(small_pictures(draw(search.candidates())))
    return search.result()
