"""A capture store whose manifest.sqlite is damaged: every `atelier capture` action says so plainly (exit 2, no
traceback), and `capture repair` recovers what can be trusted and says what it could not."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures_cli import assert_user_error, run_cli
from test_capture_store import _add, assert_consistent

from edge.capture.store import IMAGES, MANIFEST, QUARANTINE, CaptureStore, ManifestDamaged


def _checkpointed_store(root: Path, n: int) -> Path:
    """A store of n captures (alternately dress and t-shirt) whose manifest holds every row in its main file."""
    with CaptureStore(root, min_free_bytes=0) as store:
        for i in range(n):
            _add(store, i, "dress" if i % 2 else "t-shirt")
    db = sqlite3.connect(root / MANIFEST)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for suffix in ("-wal", "-shm"):
        (root / f"{MANIFEST}{suffix}").unlink(missing_ok=True)
    return root


def _wrong_schema(path: Path) -> None:
    path.unlink()
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('format_version', '1');"
                     "CREATE TABLE captures (id TEXT PRIMARY KEY, class TEXT);")
    db.close()


def _dir_in_place(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE = {
    "garbage bytes": (lambda p: p.write_bytes(b"not a database at all\x00\xff" * 200), "file is not a database"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:5000]), "malformed"),
    "zero bytes": (lambda p: p.write_bytes(b""), "empty"),
    "a directory": (_dir_in_place, "not a regular file"),
    "wrong schema": (_wrong_schema, "not a capture manifest"),
}


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    rgb = (np.random.default_rng(0).random((240, 240, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), cv2.GaussianBlur(rgb, (0, 0), 1.0))
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge.capture.archive import export_archive

    tmp = tmp_path_factory.mktemp("archive")
    return export_archive(_checkpointed_store(tmp / "store", 2), tmp / "good.tar", progress=False)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("action", ["list", "verify", "export", "import", "add"])
def test_every_action_on_a_damaged_manifest_is_a_clear_error(
    tmp_path: Path, damage: str, action: str, photo: Path, archive: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _checkpointed_store(tmp_path / "store", 3)
    images_before = sorted(p.name for p in (store / IMAGES).iterdir())
    make_damage, detail = DAMAGE[damage]
    make_damage(store / MANIFEST)
    argv = {
        "list": ["capture", "list", store],
        "verify": ["capture", "verify", store],
        "export": ["capture", "export", store, "--out", tmp_path / "out.tar"],
        "import": ["capture", "import", archive, "--store", store],
        "add": ["capture", "add", store, "--class", "t-shirt", photo],
    }[action]
    assert_user_error(argv, capsys, caplog, f"capture manifest {store / MANIFEST} is damaged", detail,
                      f"atelier capture repair {store}")
    # Nothing was touched: no image quarantined, no new manifest written over the damaged one, no archive.
    assert sorted(p.name for p in (store / IMAGES).iterdir()) == images_before
    assert not (store / QUARANTINE).is_dir() or not any((store / QUARANTINE).iterdir())
    assert not (tmp_path / "out.tar").exists()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_repair_recovers_a_store_with_a_damaged_manifest(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    store = _checkpointed_store(tmp_path / "store", 4)
    make_damage, detail = DAMAGE[damage]
    make_damage(store / MANIFEST)
    rc, out, errors = run_cli(["capture", "repair", store], capsys, caplog)
    assert rc == 0, errors
    assert "the manifest was damaged (" in out and detail in out
    assert "recovered the rows of 0 captures" in out  # none of these damages leaves a row readable
    assert "not recoverable: the classes of the images left without a row (4 files" in out
    assert len(list((store / QUARANTINE).glob("*-damaged-manifest.sqlite"))) == 1  # kept, never deleted
    # The store opens again, empty, and every image waits in quarantine/ to be added back with its class.
    assert run_cli(["capture", "verify", store], capsys, caplog)[0] == 0
    assert assert_consistent(store) == 0
    assert len([p for p in (store / QUARANTINE).iterdir() if p.suffix == ".jpg"]) == 4


def test_repair_keeps_every_row_it_can_still_read_and_quarantines_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A manifest cut in half: the rows on the surviving pages come back with their classes; the others' images
    go to quarantine; the damaged file is kept byte for byte."""
    store = _checkpointed_store(tmp_path / "store", 150)
    with CaptureStore(store, writable=False) as s:
        classes = {r.id: r.class_name for r in s.records()}
    data = (store / MANIFEST).read_bytes()
    damaged = data[: len(data) // 2]
    (store / MANIFEST).write_bytes(damaged)
    rc, out, _ = run_cli(["capture", "repair", store], capsys, caplog)
    assert rc == 0
    with CaptureStore(store, writable=False) as s:
        recovered = {r.id: r.class_name for r in s.records()}
        log = s.repairs()
    assert 0 < len(recovered) < 150, out
    assert all(classes[cid] == name for cid, name in recovered.items())  # the classes came back with the rows
    assert f"recovered the rows of {len(recovered)} captures" in out
    assert f"quarantined {150 - len(recovered)} files" in out
    assert "some of its rows could not be read" in out
    assert assert_consistent(store) == len(recovered)
    quarantined = {p.stem for p in (store / QUARANTINE).glob("*.jpg")}
    assert {q.split("-", 1)[1] for q in quarantined} == set(classes) - set(recovered)
    (kept,) = (store / QUARANTINE).glob("*-damaged-manifest.sqlite")
    assert hashlib.sha256(kept.read_bytes()).digest() == hashlib.sha256(damaged).digest()
    assert log[0]["action"] == "manifest_recovered" and log[0]["file"] == kept.name


def test_a_missing_manifest_beside_images_is_damage_not_a_new_store(tmp_path: Path) -> None:
    """Opening for writing must not start a blank manifest and quarantine every image (their classes would go)."""
    store = _checkpointed_store(tmp_path / "store", 3)
    (store / MANIFEST).unlink()
    with pytest.raises(ManifestDamaged, match="it is missing, but images/ holds images"):
        CaptureStore(store)
    assert len(list((store / IMAGES).iterdir())) == 3
    assert not (store / MANIFEST).exists()


def test_repair_of_a_folder_that_is_no_store_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert_user_error(["capture", "repair", tmp_path / "nowhere"], capsys, caplog, "is not a capture store")
    assert not (tmp_path / "nowhere").exists()
