#!/usr/bin/python3
"""Writes an image folder (torchvision's ImageFolder layout) from MNIST's IDX
files: OUT/<label>/<index>.png, 8-bit greyscale PNGs, written with zlib and
struct only (no PIL), so that any machine with python3 can make one.

  scripts/mnist_imagefolder.py OUT [--split train|test] [--limit N]
        [--mnist DIR] [--rgb]

--limit N takes the first N images of the split; --rgb writes colour PNGs
(colour type 2, the grey value in R, G and B) to exercise the RGB path.
Each file is written under a temporary name and renamed.
"""
import argparse
import gzip
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MNIST = os.path.join(HERE, "..", "..", "shared", "datasets", "mnist")


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not a uint8 IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body +
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def png(width, height, pixels, rgb):
    """pixels: height*width grey bytes -> a PNG (grey or RGB, 8-bit)."""
    rows = bytearray()
    for y in range(height):
        row = pixels[y * width:(y + 1) * width]
        rows.append(0)  # filter: none
        rows += bytes(v for v in row for _ in range(3)) if rgb else row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if rgb else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b""))


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--split", choices=["train", "test"], default="train")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--mnist", default=DEFAULT_MNIST)
    ap.add_argument("--rgb", action="store_true")
    a = ap.parse_args()
    prefix = "train" if a.split == "train" else "t10k"
    (n, h, w), images = read_idx(os.path.join(a.mnist, f"{prefix}-images-idx3-ubyte.gz"))
    (nl,), labels = read_idx(os.path.join(a.mnist, f"{prefix}-labels-idx1-ubyte.gz"))
    if nl != n:
        sys.exit(f"{n} images but {nl} labels")
    count = min(n, a.limit) if a.limit > 0 else n
    for c in sorted(set(labels[:count])):
        os.makedirs(os.path.join(a.out, str(c)), exist_ok=True)
    size = h * w
    for i in range(count):
        data = png(w, h, images[i * size:(i + 1) * size], a.rgb)
        write_atomic(os.path.join(a.out, str(labels[i]), f"{i:05d}.png"), data)
    print(f"wrote {count} {a.split} images of {w}x{h} to {a.out}")


main()
