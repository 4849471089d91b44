#!/usr/bin/env python3
"""Writes Hearth's app and tray icons (icons/*.png) with the standard library only.

The mark: an ember-orange disc with a warm core on a dark rounded square (the app
icon); the tray icon is the disc alone on transparency, so it reads on light and
dark panels. Re-run after changing the drawing: `python3 scripts/make_icons.py`.
"""

import math
import os
import struct
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "icons")


def png(path, size, pixel):
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            row.extend(pixel((x + 0.5) / size, (y + 0.5) / size))
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def mix(a, b, t):
    return tuple(round(a[i] + (b[i] - a[i]) * t) for i in range(3))


def disc(u, v):
    """Coverage and colour of the ember disc at (u, v) in the unit square."""
    d = math.hypot(u - 0.5, v - 0.56) / 0.3
    coverage = max(0.0, min(1.0, (1.0 - d) * 12))
    colour = mix((255, 214, 120), (230, 92, 30), min(1.0, d))
    return coverage, colour


def app_pixel(u, v):
    # Rounded square background, radius 0.18, with a soft edge.
    r = 0.18
    dx = max(abs(u - 0.5) - (0.5 - r), 0.0)
    dy = max(abs(v - 0.5) - (0.5 - r), 0.0)
    inside = max(0.0, min(1.0, (r - math.hypot(dx, dy)) * 60))
    bg = mix((46, 38, 34), (28, 22, 20), v)
    coverage, colour = disc(u, v)
    rgb = mix(bg, colour, coverage)
    return (*rgb, round(255 * inside))


def tray_pixel(u, v):
    coverage, colour = disc(u, 0.56 + (v - 0.5) * 1.0 - 0.06)
    return (*colour, round(255 * coverage))


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, size in [("32x32.png", 32), ("128x128.png", 128), ("128x128@2x.png", 256), ("icon.png", 512)]:
        png(os.path.join(OUT, name), size, app_pixel)
    png(os.path.join(OUT, "tray.png"), 64, tray_pixel)


if __name__ == "__main__":
    main()
