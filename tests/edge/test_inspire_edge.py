"""Design from my garment, edge side: encoded-latent design IDs, the photo decoder, and bundles with a missing or
damaged encoder (real interpreters, real Pillow/OpenCV, bundles from the real exporter and train-encoder)."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edge.bundle import load_bundle, write_manifest
from edge.designs import DesignGenerator
from edge.inspire import VARIATION_RADII_MILLI, InspireError, PhotoEncoder, check_frame, inspired_ids
from edge.kiosk.latents import (
    MAX_ID_CHARS,
    DesignId,
    DesignIdError,
    Encoded,
    LatentResolver,
    Mix,
    Neighbour,
    encode_latent,
    parse_design_id,
)
from edge.photo_decode import MAX_PHOTO_BYTES, PhotoError, decode_photo


def garment_bgr(colour_rgb: tuple[int, int, int], size: int = 160, seed: int = 0) -> np.ndarray:
    from edge.procedural_garments import render_garment

    rgb = render_garment("t-shirt", size, np.random.default_rng(seed), pattern="plain", colour=colour_rgb)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def encoded_png(bgr: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, bgr)
    assert ok
    return buf.tobytes()


# Design IDs with an encoded latent -------------------------------------------------------------------------


def test_an_encoded_latent_round_trips_through_its_id_and_resolves_bit_for_bit() -> None:
    z = np.random.default_rng(1).standard_normal(128).astype(np.float32)
    leaf = encode_latent(z, "normal")
    design = DesignId("0123456789ab", None, leaf)
    text = str(design)
    assert len(text) < 230 and text == text.lower()
    assert parse_design_id(text) == design
    resolver = LatentResolver(lambda n, seed: np.zeros((n, 128), np.float32), "normal")
    v = resolver.vector(leaf)
    assert np.array_equal(v, resolver.vector(parse_design_id(text).latent))
    assert np.abs(v - z).max() <= 0.5 / 32 + 1e-6  # the int8 rounding, nothing more
    # Nested: more like this, and a mix of two encoded latents, still fit the ID limit and parse back.
    other = encode_latent(-z, "normal")
    mix = DesignId("0123456789ab", None, Mix(Neighbour(leaf, 3, 400), other, 2, 6))
    assert len(str(mix)) <= MAX_ID_CHARS and parse_design_id(str(mix)) == mix


def test_malformed_encoded_latents_are_refused() -> None:
    for bad in ("0123456789ab.u.e", "0123456789ab.u.e1", "0123456789ab.u.eAB", "0123456789ab.u.e" + "a" * 1201):
        with pytest.raises(DesignIdError):
            parse_design_id(bad)
    text = str(DesignId("0123456789ab", None, Encoded(b"\x01" * 4)))  # 32 bits: 7 characters, 3 padding bits
    assert text.endswith("aeaqcai")  # "i" = 01000: the last 2 data bits (01), then the padding (000)
    with pytest.raises(DesignIdError, match="canonical"):  # same bytes, padding bits set: not the canonical ID
        parse_design_id(text[:-1] + "j")
    resolver = LatentResolver(lambda n, seed: np.zeros((n, 16), np.float32), "normal")
    with pytest.raises(DesignIdError, match="16"):
        resolver.vector(Encoded(b"\x00" * 8))  # another model's latent length


# Frames and photos ---------------------------------------------------------------------------------------


def test_check_frame_refuses_black_blown_out_and_blank_frames() -> None:
    check_frame(garment_bgr((200, 40, 40)))
    for frame, words in ((np.zeros((120, 160, 3), np.uint8), "too dark"),
                         (np.full((120, 160, 3), 255, np.uint8), "over-exposed"),
                         (np.full((120, 160, 3), 128, np.uint8), "blank")):
        with pytest.raises(InspireError, match=words) as info:
            check_frame(frame)
        assert info.value.status == 422


def test_decode_photo_reads_jpeg_png_webp_and_applies_orientation() -> None:
    bgr = garment_bgr((30, 120, 200), size=96)
    for ext in (".png", ".jpg", ".webp"):
        out = decode_photo(encoded_png(bgr, ext))
        assert out.shape == (96, 96, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - bgr.astype(int)).mean() < 6, ext
    # A portrait phone photo stored sideways with an EXIF orientation tag comes out upright.
    img = Image.fromarray(np.zeros((40, 80, 3), np.uint8) + 90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    assert decode_photo(buf.getvalue()).shape[:2] == (80, 40)
    # Transparency lands on white.
    rgba = np.zeros((48, 48, 4), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    assert decode_photo(buf.getvalue()).min() == 255


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny compressed row of data (a bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def test_decode_photo_refuses_what_it_should_not_decode() -> None:
    cases = [
        (b"", 400, "no photo"),
        (b"hello, this is text", 415, "not a photo"),
        (b"%PDF-1.4" + b"\x00" * 100, 415, "not a photo"),
        (b"\x00" * (MAX_PHOTO_BYTES + 1), 413, "MB"),
        (_png_header_only(10_000, 5_000), 413, "50 megapixels"),  # 50 MP: refused from the header
        (_png_header_only(5_000, 5_000), 413, "megapixels"),  # a decompression bomb: 25 MP from 100 bytes
        (_png_header_only(20, 20), 400, "only 20x20"),
        (encoded_png(garment_bgr((1, 2, 3)))[:300], 400, "damaged"),  # cut short
    ]
    for data, status, words in cases:
        with pytest.raises(PhotoError, match=words) as info:
            decode_photo(data)
        assert info.value.status == status, words
    big_jpeg_header = encoded_png(np.zeros((64, 64, 3), np.uint8), ".jpg")
    sof = big_jpeg_header.index(b"\xff\xc0")  # patch the frame header to claim 10000 x 5000 (50 MP)
    patched = big_jpeg_header[: sof + 5] + struct.pack(">HH", 5000, 10000) + big_jpeg_header[sof + 9:]
    with pytest.raises(PhotoError, match="50 megapixels") as info:
        decode_photo(patched)
    assert info.value.status == 413


# The encoder in a bundle -------------------------------------------------------------------------------


def test_the_int8_encoder_makes_ids_that_regenerate_bit_for_bit(tiny_conditional_inspire_bundle: Path) -> None:
    bundle = load_bundle(tiny_conditional_inspire_bundle)
    assert bundle.encoder is not None and bundle.encoder_error is None
    encoder = PhotoEncoder(bundle, num_threads=1)
    encoding = encoder.encode(garment_bgr((200, 40, 40)))
    assert encoding.z.shape == (bundle.z_dim,) and np.isfinite(encoding.z).all()
    assert encoding.class_id in range(len(bundle.class_names or ())) and 0 < encoding.class_confidence <= 1
    again = encoder.encode(garment_bgr((200, 40, 40)))
    assert np.array_equal(encoding.z, again.z)  # deterministic
    ids = inspired_ids(bundle, encoding)
    assert len(ids) == 1 + len(VARIATION_RADII_MILLI)
    assert isinstance(ids[0].latent, Encoded) and all(isinstance(d.latent, Neighbour) for d in ids[1:])
    assert {d.class_id for d in ids} == {encoding.class_id}
    gen = DesignGenerator(bundle, batch=1)
    resolver = LatentResolver(gen.sample_latents, bundle.z_distribution)
    first = [gen.generate(resolver.vector(d.latent)[None], [d.class_id])[0] for d in ids]
    parsed = [parse_design_id(str(d)) for d in ids]
    second = [gen.generate(resolver.vector(d.latent)[None], [d.class_id])[0] for d in parsed]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert len({d.tobytes() for d in first}) == len(first)  # the variations differ from the reconstruction
    assert inspired_ids(bundle, encoding, 1, class_id=0)[0].class_id == 0


def test_a_bundle_without_an_encoder_loads_and_says_so(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.encoder is None and bundle.encoder_error is None
    with pytest.raises(Exception, match="without an encoder"):
        PhotoEncoder(bundle)


@pytest.mark.parametrize("damage", ["missing", "corrupt", "not-tflite", "bad-entry"])
def test_a_missing_or_damaged_encoder_leaves_the_generator_serving(
    tiny_inspire_bundle: Path, tmp_path: Path, damage: str
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_inspire_bundle, broken)
    encoder_file = broken / "encoder_b1.tflite"
    if damage == "missing":
        encoder_file.unlink()
    elif damage == "corrupt":
        data = bytearray(encoder_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        encoder_file.write_bytes(bytes(data))
    elif damage == "not-tflite":
        manifest = json.loads((broken / "manifest.json").read_text())
        encoder_file.write_bytes(b"\x00" * 64)
        write_manifest(broken, manifest)  # hashes now match a file that is not a model
    else:
        manifest = json.loads((broken / "manifest.json").read_text())
        manifest["encoder"]["outputs"][0]["shape"] = [1, 3]
        write_manifest(broken, manifest)
    bundle = load_bundle(broken)  # the generator still verifies and loads
    assert bundle.encoder is None and bundle.encoder_error
    words = {"missing": "missing", "corrupt": "checksum", "not-tflite": "TFLite", "bad-entry": "shapes"}[damage]
    assert words in bundle.encoder_error
    designs = DesignGenerator(bundle, batch=1).generate(np.zeros((1, bundle.z_dim), np.float32))
    assert designs.shape == (1, bundle.size_px, bundle.size_px, 3)
