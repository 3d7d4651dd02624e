"""`atelier capture`: look after a capture store (list, verify, repair, export, import, add photos, staff PIN)."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "capture"
HELP = "manage a kiosk capture store: list, verify, repair, export/import a .tar, add photos, hash a staff PIN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="capture_command", metavar="ACTION", required=True)

    s = sub.add_parser("list", help="classes, counts and size of a store")
    s.add_argument("store", metavar="STORE", help="capture store folder")
    s.add_argument("--json", action="store_true", help="print every capture's row as JSON")

    s = sub.add_parser("verify", help="check every capture's file against its size and sha256 (read-only)")
    s.add_argument("store", metavar="STORE")

    s = sub.add_parser("repair", help="quarantine files without a row and drop rows without a file")
    s.add_argument("store", metavar="STORE")

    s = sub.add_parser("export", help="write the store to one .tar (manifest, SHA256SUMS, images)")
    s.add_argument("store", metavar="STORE")
    s.add_argument("--out", required=True, metavar="TAR", help="the .tar file to write")
    s.add_argument("--overwrite", action="store_true", help="replace an existing TAR")

    s = sub.add_parser("import", help="add the captures of an exported .tar to a store (created if missing)")
    s.add_argument("tar", metavar="TAR")
    s.add_argument("--store", required=True, metavar="STORE")

    s = sub.add_parser("add", help="add photo files through the capture pipeline (gate, dedupe, face blur)")
    s.add_argument("store", metavar="STORE")
    s.add_argument("images", metavar="IMAGE", nargs="+", help="JPEG/PNG/WebP files")
    s.add_argument("--class", dest="class_name", required=True, help="the garment class of these photos")

    sub.add_parser("hash-pin", help="read a staff PIN on stdin and print the kiosk config line that holds its hash")


def _list(args: argparse.Namespace) -> int:
    from edge.capture.store import CaptureStore

    with CaptureStore(args.store, writable=False) as store:
        records = store.records()
        if args.json:
            sys.stdout.write(json.dumps([r.to_json() for r in records], indent=1) + "\n")
            return 0
        counts = store.class_counts()
        sys.stdout.write(f"{args.store}: {len(records)} captures, {store.used_bytes() / 1e6:.1f} MB, "
                         f"{len(store.quarantined())} files in quarantine\n")
        for name, n in counts.items():
            sys.stdout.write(f"  {name}: {n}\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edge.capture.store import CaptureStore
    from edge.errors import UserError

    with CaptureStore(args.store, writable=False) as store:
        problems = store.verify()
        n = len(store)
    if problems:
        for p in problems:
            sys.stdout.write(f"{p['id']}: {p['problem']} ({p['file']})\n")
        raise UserError(f"{len(problems)} of {n} captures in {args.store} are damaged; "
                        "`atelier capture repair` moves them to quarantine")
    sys.stdout.write(f"{n} captures intact\n")
    return 0


def _repair(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.capture.recover import recover_manifest
    from edge.capture.store import IMAGES, MANIFEST, CaptureStore, ManifestDamaged
    from edge.errors import UserError

    root = Path(args.store)
    if not (root / MANIFEST).exists() and not (root / IMAGES).is_dir():
        raise UserError(f"{root} is not a capture store (no {MANIFEST}, no {IMAGES}/): nothing to repair")
    recovery = None
    try:
        store = CaptureStore(root, min_free_bytes=0)  # opening repairs interrupted writes
    except ManifestDamaged as exc:
        recovery = recover_manifest(root, exc.detail)  # a new manifest with the rows that can be trusted
        store = CaptureStore(root, min_free_bytes=0)
    with store:
        first = store.last_repair
        damaged = store.repair_damaged()  # then every file against its sha256
    if recovery is not None:
        sys.stdout.write(recovery.summary() + "\n")
    sys.stdout.write(f"quarantined {len(first.quarantined) + len(damaged.quarantined)} files, dropped "
                     f"{len(first.dropped_rows) + len(damaged.dropped_rows)} rows\n")
    if recovery is not None and first.quarantined:
        sys.stdout.write(f"not recoverable: the classes of the images left without a row ({len(first.quarantined)} "
                         f"files, now in {root}/quarantine/; add each back with `atelier capture add {root} "
                         "--class NAME FILE`) and the old manifest's repair log\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from edge.capture.archive import export_archive

    out = export_archive(args.store, args.out, overwrite=args.overwrite)
    sys.stdout.write(f"wrote {out}\n")
    return 0


def _import(args: argparse.Namespace) -> int:
    from edge.capture.archive import import_archive

    report = import_archive(args.tar, args.store)
    sys.stdout.write(f"added {report.added} captures ({report.skipped_duplicates} already there); store now: "
                     + ", ".join(f"{k} {v}" for k, v in report.classes.items()) + "\n")
    return 0


def _add(args: argparse.Namespace) -> int:
    from pathlib import Path

    import cv2

    from edge.capture.pipeline import CapturePipeline, CaptureRejected
    from edge.capture.store import CaptureStore
    from edge.errors import UserError

    refused = 0
    with CaptureStore(args.store) as store:
        pipeline = CapturePipeline(store)
        for name in args.images:
            path = Path(name)
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
            if frame is None:
                sys.stdout.write(f"{path}: refused: not a readable image\n")
                refused += 1
                continue
            try:
                record = pipeline.capture(frame, args.class_name, source="cli")
            except CaptureRejected as exc:
                sys.stdout.write(f"{path}: refused ({exc.reason}): {exc}\n")
                refused += 1
                continue
            sys.stdout.write(f"{path}: stored as {record.id} ({record.faces_blurred} faces blurred)\n")
    if refused == len(args.images):
        raise UserError(f"none of the {len(args.images)} images was stored")
    return 0


def _hash_pin(_: argparse.Namespace) -> int:
    import getpass

    from edge.kiosk.staff import hash_pin

    pin = getpass.getpass("staff PIN (4-12 digits): ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    sys.stdout.write(f'staff_pin_hash = "{hash_pin(pin)}"\n')
    return 0


_ACTIONS = {"list": _list, "verify": _verify, "repair": _repair, "export": _export, "import": _import, "add": _add,
            "hash-pin": _hash_pin}


def run(args: argparse.Namespace) -> int:
    return _ACTIONS[args.capture_command](args)
