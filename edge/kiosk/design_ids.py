"""The design-ID vocabulary of one bundle: parse and check IDs, resolve classes, name new designs.

A design ID names one picture (model, class, latent operation; see `edge.kiosk.latents`). `DesignIds` checks an
ID belongs to the bundle in service and makes the IDs of new designs, neighbours and mixes; it never generates a
picture. Errors a client can fix are `ApiError`s (400 malformed, 409 another model's ID).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np

from edge.bundle import Bundle
from edge.kiosk import latents
from edge.kiosk.api_error import ApiError
from edge.kiosk.latents import DesignId, DesignIdError, Mix, Neighbour, Sample


class DesignIds:
    """IDs for `bundle` (one per model slot: it swaps with the bundle)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    @property
    def trained_on(self) -> list[str]:
        """The garment classes the model designs: its class list, or for an unconditional model the classes its
        training data held (from the manifest; [] when it does not say)."""
        if self.bundle.class_names is not None:
            return list(self.bundle.class_names)
        training = self.bundle.manifest.get("training")
        config = training.get("config") if isinstance(training, dict) else None
        names = config.get("class_names") if isinstance(config, dict) else None
        return [n for n in names if isinstance(n, str) and n] if isinstance(names, list) else []

    def parse_id(self, text: str) -> DesignId:
        """Parse a design ID and check it belongs to this kiosk's model and class list.

        Raises:
            ApiError: 400 for a malformed ID or a class this model lacks, 409 for another model's ID.
        """
        try:
            design = latents.parse_design_id(text)
        except DesignIdError as exc:
            raise ApiError(400, f"bad design ID: {exc}") from None
        if design.model_id != self.bundle.model_id:
            raise ApiError(409, f"design {text} was made by model {design.model_id}; this kiosk serves model "
                                f"{self.bundle.model_id}, so it cannot regenerate it")
        self._check_class_id(design.class_id, text)
        return design

    def _check_class_id(self, class_id: int | None, where: str) -> None:
        names = self.bundle.class_names
        if names is None and class_id is not None:
            raise ApiError(400, f"{where}: this model is unconditional; its designs have class 'u'")
        if names is not None and (class_id is None or class_id >= len(names)):
            raise ApiError(400, f"{where}: this model draws classes c0..c{len(names) - 1} "
                                f"({', '.join(names)}); the ID needs one of them")

    def class_id(self, value: str | int | None) -> int | None:
        """A class given by name or index -> its index (None when not given).

        Raises:
            ApiError: 400 for an unknown class, or any class on an unconditional model.
        """
        names = self.bundle.class_names
        if value is None:
            return None
        if names is None:
            raise ApiError(400, "this model is unconditional: leave out 'class'")
        if isinstance(value, int) and 0 <= value < len(names):
            return value
        if isinstance(value, str) and value in names:
            return names.index(value)
        raise ApiError(400, f"unknown class {value!r}; this model knows: {', '.join(names)} "
                            f"(or their numbers 0..{len(names) - 1})")

    def design_json(self, design: DesignId) -> dict[str, object]:
        """The JSON the page gets for a design: ID, picture URL, shareable page URL, class and operation."""
        text = str(design)
        names = self.bundle.class_names
        return {
            "id": text,
            "url": f"/api/design/{text}.png",
            "page": f"/d/{text}",
            "class": None if names is None or design.class_id is None else names[design.class_id],
            "class_id": design.class_id,
            **latents.describe(design.latent),
        }

    def default_classes(self, seed: int, n: int) -> list[int | None]:
        names = self.bundle.class_names
        if names is None:
            return [None] * n
        # No class asked for: a deterministic mix of classes drawn from the seed (shown in each ID).
        rng = np.random.default_rng([seed, 0x6B696F736B])
        return [int(c) for c in rng.integers(0, len(names), size=n)]

    def sample_ids(self, n: int, seed: int | None, class_id: int | None) -> tuple[int, list[DesignId]]:
        """IDs of n new designs: samples 0..n-1 of `seed` (random when None)."""
        seed = secrets.randbelow(latents.MAX_SEED + 1) if seed is None else seed
        classes = [class_id] * n if class_id is not None else self.default_classes(seed, n)
        return seed, [DesignId(self.bundle.model_id, classes[i], Sample(seed, i)) for i in range(n)]

    def neighbour_ids(self, parent: DesignId, n: int, radius: float, start: int,
                      class_id: int | None) -> list[DesignId]:
        """IDs of neighbours start..start+n-1 of `parent` at `radius` (rounded to 1/1000)."""
        radius_milli = round(radius * 1000)
        if not 1 <= radius_milli <= latents.MAX_RADIUS_MILLI:
            raise ApiError(400, f"radius must be in 0.001..{latents.MAX_RADIUS_MILLI / 1000:g}, got {radius}")
        if start + n - 1 > latents.MAX_NEIGHBOUR:
            raise ApiError(400, f"start + n must stay within {latents.MAX_NEIGHBOUR + 1}")
        cls = parent.class_id if class_id is None else class_id
        return [DesignId(self.bundle.model_id, cls, Neighbour(parent.latent, j, radius_milli))
                for j in range(start, start + n)]

    def mix_ids(self, a: DesignId, b: DesignId, steps: int, class_id: int | None) -> list[DesignId]:
        """IDs of the steps+1 designs from `a` to `b` (both ends included)."""
        cls = a.class_id if class_id is None else class_id
        return [DesignId(self.bundle.model_id, cls, Mix(a.latent, b.latent, k, steps))
                for k in range(steps + 1)]

    def check_depth(self, designs: Sequence[DesignId]) -> None:
        """Refuse IDs that would not parse back (too long or too deep), so every ID handed out is usable."""
        for d in designs:
            try:
                latents.parse_design_id(str(d))
            except DesignIdError as exc:
                raise ApiError(400, f"that design cannot be taken further: {exc}") from None
