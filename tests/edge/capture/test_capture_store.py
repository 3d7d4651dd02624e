"""The capture store: crash safety under SIGKILL, start-up repair, disk full, export/import, the trainer reading it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from atelier.cli import main as atelier_main
from edge.capture.archive import ArchiveError, export_archive, import_archive
from edge.capture.store import (
    IMAGES,
    QUARANTINE,
    TMP,
    CaptureStore,
    FrameQuality,
    StoreError,
    StoreFull,
    new_capture_id,
    validate_class_name,
)
from edge.errors import UserError
from edge.procedural_garments import GARMENT_KINDS, render_garment
from trainer.dataset import load_training_data

REPO = Path(__file__).resolve().parents[3]
QUALITY = FrameQuality(sharpness=150.0, mean_luma=120.0, dark_fraction=0.0, bright_fraction=0.01, dhash=0xABCD)


def _jpeg(seed: int, size: int = 64, kind: str = "t-shirt") -> bytes:
    rgb = render_garment(kind, size, np.random.default_rng(seed))
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _add(store: CaptureStore, seed: int, class_name: str = "t-shirt", size: int = 64):
    kind = class_name if class_name in GARMENT_KINDS else "dress"
    return store.add_jpeg(_jpeg(seed, size, kind), class_name=class_name, quality=QUALITY, width=size,
                          height=size, source="cli")


def assert_consistent(root: Path) -> int:
    """Every manifest row has its intact, decodable file and every image file has its row; returns the rows."""
    db = sqlite3.connect(f"{(root / 'manifest.sqlite').as_uri()}?mode=ro", uri=True)
    rows = db.execute("SELECT file, bytes, sha256 FROM captures").fetchall()
    db.close()
    files = {p.name for p in (root / IMAGES).iterdir()}
    assert files == {r[0] for r in rows}, "image files and manifest rows differ"
    for file, size, sha in rows:
        data = (root / IMAGES / file).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, f"{file} is damaged"
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None, f"{file} is truncated"
    assert not list((root / TMP).iterdir()), "temp files left behind"
    return len(rows)


# Crash safety ----------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    import cv2, numpy as np
    from edge.capture.store import CaptureStore, FrameQuality
    store_dir, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    with CaptureStore(store_dir, min_free_bytes=0) as store:
        print("ready", flush=True)
        for i in range(n):
            img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            q = FrameQuality(100.0, 120.0, 0.0, 0.0, int(rng.integers(0, 2**63)))
            store.add_jpeg(buf.tobytes(), class_name="dress", quality=q, width=128, height=96, source="cli")
            print(i, flush=True)
    print("done", flush=True)
""")


def test_sigkill_at_random_moments_leaves_every_row_with_its_intact_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rng = np.random.default_rng(2024)
    killed_mid_run, rows_before = 0, 0
    for round_no in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), "200", str(round_no)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # Kill after a random number of captures, a random fraction of a capture later: whatever the disk's
        # speed, the kill lands mid-run, at a random phase of a write.
        for _ in range(int(rng.integers(0, 199))):
            proc.stdout.readline()
        time.sleep(float(rng.uniform(0.0, 0.004)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        killed_mid_run += "done" not in out
        # Restart: opening for writing repairs what the kill left; then everything must be consistent.
        with CaptureStore(root, min_free_bytes=0) as store:
            repair = store.last_repair
            assert len(store) >= rows_before
            rows_before = len(store)
        assert assert_consistent(root) == rows_before
        # Whatever was quarantined is a temp file or an orphan image, never a row's file.
        assert len(repair.quarantined) <= 1 and not repair.dropped_rows
    assert killed_mid_run >= 5, "the kills should land while the writer is busy"
    with CaptureStore(root, writable=False) as store:
        assert store.verify() == []
        quarantined = store.quarantined()
        logged = [r for r in store.repairs() if r["action"] == "quarantined"]
    assert len(quarantined) == len(logged)


def test_startup_repair_quarantines_orphans_and_drops_rows_without_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with CaptureStore(root) as store:
        kept = _add(store, 1)
        lost = _add(store, 2)
        shrunk = _add(store, 3)
    # The three states an interrupted or tampered write can leave behind:
    (root / TMP / f"{new_capture_id()}.jpg.part").write_bytes(b"\xff\xd8half a jpeg")  # killed while writing
    orphan = root / IMAGES / f"{new_capture_id()}.jpg"
    orphan.write_bytes(_jpeg(9))  # killed after the rename, before the row
    (root / IMAGES / lost.file).unlink()  # a row whose file vanished
    (root / IMAGES / shrunk.file).write_bytes(b"\xff\xd8")  # a file cut short
    with CaptureStore(root) as store:
        report = store.last_repair
        assert [r.id for r in store.records()] == [kept.id]
        assert sorted(report.dropped_rows) == sorted([lost.id, shrunk.id])
        assert len(report.quarantined) == 3
        assert sorted(r["action"] for r in store.repairs()) == ["dropped_row", "dropped_row", "quarantined",
                                                                 "quarantined", "quarantined"]
    assert assert_consistent(root) == 1
    quarantine = sorted(p.name for p in (root / QUARANTINE).iterdir())
    assert any(name.endswith(orphan.name) for name in quarantine)  # moved, not deleted
    assert any(name.endswith(".part") for name in quarantine)
    with CaptureStore(root) as store:
        assert store.last_repair.clean  # a second start-up finds nothing to do


def test_second_writer_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with CaptureStore(root), pytest.raises(StoreError, match="open for writing by another process"):
        CaptureStore(root)
    with CaptureStore(root, writable=False) as reader:  # readers are fine while the kiosk writes
        assert len(reader) == 0
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(StoreError, match="not empty and is not a capture store"):
        CaptureStore(other)
    with pytest.raises(StoreError, match="not a capture store"):
        CaptureStore(other, writable=False)
    with CaptureStore(root, writable=False) as reader, pytest.raises(StoreError, match="read-only"):
        _add(reader, 1)


@pytest.mark.parametrize("name", ["", "   ", "../../etc", "a/b", "x" * 65, "bell\x07", "-dash", "nul\x00"])
def test_bad_class_names_are_refused(tmp_path: Path, name: str) -> None:
    with CaptureStore(tmp_path / "s") as store, pytest.raises(StoreError):
        store.add_jpeg(_jpeg(1), class_name=name, quality=QUALITY, width=64, height=64)
    assert validate_class_name("  evening   dress ") == "evening dress"
    assert validate_class_name("T-shirt") == "T-shirt"
    assert validate_class_name("tab\there") == "tab here"


# Disk full -------------------------------------------------------------------------------------------------


def test_store_limit_refuses_the_capture_and_keeps_the_store_intact(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with CaptureStore(root, max_bytes=300_000, min_free_bytes=0) as store:
        added = 0
        with pytest.raises(StoreFull, match=r"out of space.*limit.*Nothing was written"):
            for seed in range(100):
                _add(store, seed, size=128)
                added += 1
        assert 0 < added < 100 and len(store) == added
    assert assert_consistent(root) == added


def test_free_space_floor_refuses_before_writing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with CaptureStore(root, min_free_bytes=free + (1 << 30)) as store:
        with pytest.raises(StoreFull, match="MB free on its disk"):
            _add(store, 1)
        assert len(store) == 0
    assert assert_consistent(root) == 0


RLIMIT_WRITER = textwrap.dedent("""
    import json, resource, signal, sys
    import cv2, numpy as np
    from edge.capture.store import CaptureStore, FrameQuality, StoreFull
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
    store_dir = sys.argv[1]
    q = FrameQuality(100.0, 120.0, 0.0, 0.0, 1)
    rng = np.random.default_rng(0)
    def jpeg(side):
        ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        return buf.tobytes()
    small, big = jpeg(48), jpeg(600)
    with CaptureStore(store_dir, min_free_bytes=None) as store:
        store.add_jpeg(small, class_name="dress", quality=q, width=48, height=48)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
        outcome = {"big_bytes": len(big)}
        try:
            store.add_jpeg(big, class_name="dress", quality=q, width=400, height=400)
            outcome["big"] = "stored"
        except StoreFull as exc:
            outcome["big"] = str(exc)
        store.add_jpeg(small, class_name="dress", quality=q, width=48, height=48)
        outcome["rows"] = len(store)
    print(json.dumps(outcome))
""")


def test_write_failing_with_efbig_is_refused_and_cleaned_up(tmp_path: Path) -> None:
    root = tmp_path / "store"
    out = subprocess.run([sys.executable, "-c", RLIMIT_WRITER, str(root)], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["big_bytes"] > 256 * 1024
    assert "out of space" in outcome["big"] and "File too large" in outcome["big"]
    assert outcome["rows"] == 2  # the store kept working after the refusal
    assert assert_consistent(root) == 2


@contextlib.contextmanager
def _tiny_tmpfs(path: Path, size: str):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, ("mounting a tmpfs failed; this test needs root (developer machines and CI "
                                     f"run as root): {mounted.stderr}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_real_enospc_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    """A real full disk (tmpfs of 1 MiB, needs root)."""
    with _tiny_tmpfs(tmp_path / "disk", "1m"):
        root = tmp_path / "disk" / "store"
        added = 0
        with CaptureStore(root, min_free_bytes=None) as store:  # no pre-check: the OS must say ENOSPC
            with pytest.raises(StoreFull, match=r"No space left on device|database or disk is full"):
                for seed in range(1000):
                    _add(store, seed, size=160)
                    added += 1
            assert len(store) == added > 0
            # Whichever write hit the wall first (the JPEG or the manifest's WAL), a JPEG larger than what is
            # left now fails in write(2) itself: the temp file must go and no row appear.
            with pytest.raises(StoreFull, match="No space left on device"):
                _add(store, 5000, size=600)
            assert len(store) == added
        assert assert_consistent(root) == added
        with CaptureStore(root, writable=False) as store:
            assert store.verify() == []


# Export / import -------------------------------------------------------------------------------------------


@pytest.fixture()
def small_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with CaptureStore(root) as store:
        for i, kind in enumerate(["t-shirt", "t-shirt", "dress", "skirt", "skirt", "skirt"]):
            _add(store, i, kind, size=72)
    return root


def test_export_import_round_trip_and_idempotent(small_store: Path, tmp_path: Path) -> None:
    tar_path = export_archive(small_store, tmp_path / "captures.tar")
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
    assert names[:2] == ["manifest.json", "SHA256SUMS"] and len(names) == 8
    report = import_archive(tar_path, tmp_path / "copy")
    assert (report.added, report.skipped_duplicates) == (6, 0)
    assert import_archive(tar_path, tmp_path / "copy").added == 0
    with CaptureStore(small_store, writable=False) as a, CaptureStore(tmp_path / "copy", writable=False) as b:
        ra, rb = a.records(), b.records()
        assert [(r.id, r.class_name, r.sha256, r.time_utc) for r in ra] == \
               [(r.id, r.class_name, r.sha256, r.time_utc) for r in rb]
        assert {r.source for r in rb} == {"import"}
    assert assert_consistent(tmp_path / "copy") == 6
    with pytest.raises(ArchiveError, match="already exists"):
        export_archive(small_store, tar_path)


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a tar member by member through `edit(info, data) -> list[(info, data)]`."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read() if info.isfile() else b""
            for new_info, new_data in edit(info, data):
                new_info.size = len(new_data) if new_info.isfile() else 0
                tout.addfile(new_info, io.BytesIO(new_data) if new_info.isfile() else None)
    return dst


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


ROW_EDITS: dict[str, dict[str, object]] = {
    "row_sharpness": {"sharpness": "x"}, "row_width": {"width": "abc"}, "row_time": {"time_utc": "yesterday"},
    "row_nan": {"mean_luma": float("nan")}, "row_faces": {"faces_blurred": True},
}


@pytest.mark.parametrize("attack, message", [
    ("absolute", "absolute or parent path"),
    ("dotdot", "absolute or parent path"),
    ("symlink", "not a regular file"),
    ("extra", "unexpected member"),
    ("tampered", "fails its checksum"),
    ("sums_disagree", "disagree|do not list the same"),
    ("truncated", "truncated|damaged|not a readable tar"),
    ("manifest_path", "bad id, file name"),
    # A row whose field has the wrong JSON type must be refused up front, not fail mid-import after the
    # captures before it were written (the last row is edited).
    ("row_sharpness", r"malformed \(sharpness must be a finite number"),
    ("row_width", r"malformed \(width must be a whole number"),
    ("row_time", r"malformed \(time_utc must be an ISO 8601 time"),
    ("row_nan", r"malformed \(mean_luma must be a finite number"),
    ("row_faces", r"malformed \(faces_blurred must be a whole number"),
])
def test_hostile_or_damaged_archives_import_nothing(small_store: Path, tmp_path: Path, attack: str,
                                                    message: str) -> None:
    good = export_archive(small_store, tmp_path / "good.tar")
    bad = tmp_path / "bad.tar"

    def edit(info: tarfile.TarInfo, data: bytes):
        out = [(info, data)]
        if info.name == "SHA256SUMS":
            if attack == "absolute":
                out.append((_member("/tmp/evil.jpg"), b"x"))
            elif attack == "dotdot":
                out.append((_member("images/../../evil.jpg"), b"x"))
            elif attack == "symlink":
                out.append((_member("images/link.jpg", tarfile.SYMTYPE, "/etc/passwd"), b""))
            elif attack == "extra":
                out.append((_member("notes.txt"), b"hello"))
            elif attack == "sums_disagree":
                out = [(info, data.replace(data[:8], b"00000000", 1))]
        if attack == "tampered" and info.name.startswith("images/") and not getattr(edit, "done", False):
            edit.done = True  # type: ignore[attr-defined]
            out = [(info, data[:-10] + b"\x00" * 10)]
        if attack == "manifest_path" and info.name == "manifest.json":
            manifest = json.loads(data)
            manifest["captures"][0]["file"] = "../../etc/passwd"
            out = [(info, json.dumps(manifest).encode())]
        if attack in ROW_EDITS and info.name == "manifest.json":
            manifest = json.loads(data)
            manifest["captures"][-1].update(ROW_EDITS[attack])
            out = [(info, json.dumps(manifest).encode())]
        return out

    if attack == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        _rewrite(good, bad, edit)
    target = tmp_path / "target"
    with pytest.raises(ArchiveError, match=message):
        import_archive(bad, target)
    assert not target.exists()  # verified before anything was written
    assert not (tmp_path / "evil.jpg").exists()


# The trainer reads a store and its export ------------------------------------------------------------------


def test_trainer_reads_a_store_and_its_tar(small_store: Path, tmp_path: Path) -> None:
    data = load_training_data(small_store, 32, progress=False)
    assert data.class_names == ["dress", "skirt", "t-shirt"]
    assert data.report.class_counts == {"dress": 1, "skirt": 3, "t-shirt": 2}
    assert data.images.shape == (6, 32, 32, 3)
    tar_path = export_archive(small_store, tmp_path / "c.tar")
    from_tar = load_training_data(tar_path, 32, classes=["skirt"], progress=False)
    assert from_tar.class_names == ["skirt"] and len(from_tar.images) == 3
    np.testing.assert_array_equal(from_tar.images, data.images[data.labels == 1])
    assert from_tar.report.data_dir == str(tar_path.resolve())
    with pytest.raises(UserError, match="--classes coat not found in the capture store"):
        load_training_data(small_store, 32, classes=["coat"], progress=False)
    with CaptureStore(tmp_path / "empty"):
        pass
    with pytest.raises(UserError, match="holds no captures yet"):
        load_training_data(tmp_path / "empty", 32, progress=False)


# The CLI ---------------------------------------------------------------------------------------------------


def test_cli_list_verify_repair_export_import(small_store: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert atelier_main(["capture", "list", str(small_store)]) == 0
    assert "6 captures" in capsys.readouterr().out
    assert atelier_main(["capture", "verify", str(small_store)]) == 0
    tar_path = tmp_path / "c.tar"
    assert atelier_main(["capture", "export", str(small_store), "--out", str(tar_path)]) == 0
    assert atelier_main(["capture", "export", str(small_store), "--out", str(tar_path)]) == 2  # exists
    assert atelier_main(["capture", "import", str(tar_path), "--store", str(tmp_path / "copy")]) == 0
    assert "added 6 captures" in capsys.readouterr().out
    # Damage one file without changing its size: verify finds it, repair quarantines it and drops its row.
    victim = sorted((small_store / IMAGES).iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert atelier_main(["capture", "verify", str(small_store)]) == 2
    assert "checksum mismatch" in capsys.readouterr().out
    assert atelier_main(["capture", "repair", str(small_store)]) == 0
    assert "quarantined 1 files, dropped 1 rows" in capsys.readouterr().out
    assert atelier_main(["capture", "verify", str(small_store)]) == 0
    assert assert_consistent(small_store) == 5
    assert atelier_main(["capture", "list", str(tmp_path / "nowhere")]) == 2


def test_cli_hash_pin_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.kiosk.staff import verify_pin

    monkeypatch.setattr(sys, "stdin", io.StringIO("4711\n"))
    assert atelier_main(["capture", "hash-pin"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith('staff_pin_hash = "pbkdf2_sha256$') and "4711" not in line
    stored = line.split('"')[1]
    assert verify_pin("4711", stored) and not verify_pin("4712", stored)
    monkeypatch.setattr(sys, "stdin", io.StringIO("12ab\n"))
    assert atelier_main(["capture", "hash-pin"]) == 2
