"""The realism yardstick ranks five image sets as a person does, where today's 64 px FCD does not.

Real clothing-small t-shirt photos (from ../shared), their blocky and gridded copies, 200 designs of the t-shirt
default of 2026-11-25 (models/reference/default-2026-11-25-designs.npz: the designs the realism issue was filed about;
today's default outgrew them) and the seed preset after 30 minutes (models/reference/seed-30min-designs.npz).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.instrument_check import PERSON_ORDER, format_check, run_check

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "datasets" / "clothing-small"


@pytest.fixture(scope="module")
def check():
    assert (DATA / "train" / "t-shirt").is_dir(), f"the clothing-small dataset must be at {DATA}"
    return run_check(DATA, REPO / "models" / "reference" / "default-2026-11-25-designs.npz",
                     REPO / "models" / "reference" / "seed-30min-designs.npz")


def test_kid_in_the_128_px_space_ranks_the_sets_as_a_person_does(check) -> None:
    assert tuple(check.ranking("kid_128")) == PERSON_ORDER
    # And tells blockiness, today's default and the seed preset apart beyond its noise.
    for better, worse in (("photos", "blocky"), ("blocky", "default"), ("default", "seed-30min")):
        assert check.separates("kid_128", better, worse), (better, worse)


def test_todays_64_px_fcd_calls_blocky_and_gridded_photos_as_real_as_photos(check) -> None:
    for degraded in ("blocky", "grid"):
        assert not check.separates("fcd_64", "photos", degraded), degraded


def test_the_two_sample_test_is_at_chance_for_photos_and_not_for_the_rest(check) -> None:
    photos = check.results["photos"]["two_sample"]
    assert photos["ci95"][0] <= 0.5 <= photos["ci95"][1] + 0.02  # photos vs photos: indistinguishable
    for name in ("blocky", "default", "seed-30min"):
        test = check.results[name]["two_sample"]
        assert test["ci95"][0] > 0.6 and test["p_value"] < 1e-4, name
        assert check.separates("two_sample", "photos", name), name
    assert check.headline("seed-30min")["two_sample"] > 0.95


def test_the_artefact_numbers_name_the_defect(check) -> None:
    photos, grid, blocky, default = (check.headline(n) for n in ("photos", "grid", "blocky", "default"))
    # A faint grid hides from every feature number (within their noise) but not from the spectrum.
    assert grid["grid_peak_db"] > 10 > photos["grid_peak_db"]
    assert default["grid_peak_db"] > photos["grid_peak_db"] + 3  # today's default's nearest upsampling
    assert blocky["spectrum_db"] > 10 > photos["spectrum_db"]  # blockiness removes the high frequencies
    assert check.headline("seed-30min")["near_duplicates"] > 0.5  # flat grey: every design like the next


def test_the_table_says_which_numbers_rank_right(check) -> None:
    text = format_check(check)
    assert "- kid_128: photos ~ grid < blocky < default < seed-30min (order right)" in text
    assert "- fcd_64: photos ~" in text
