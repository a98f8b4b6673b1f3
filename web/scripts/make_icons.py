"""Draws the app icons (PNG) without any image library: an upload arrow on the brand blue.

Run once when the design changes: python3 scripts/make_icons.py (writes public/icons/).
"""

import struct
import zlib
from pathlib import Path

BLUE = (0x0B, 0x5C, 0xAD)
WHITE = (0xFF, 0xFF, 0xFF)


def inside_arrow(x: float, y: float) -> bool:
    # Coordinates in 0..1 of the arrow's box: a triangle head over a rectangular shaft.
    if 0.0 <= y <= 0.5:
        half = 0.5 * y / 0.5
        return abs(x - 0.5) <= half
    return 0.5 < y <= 1.0 and abs(x - 0.5) <= 0.175


def draw(size: int, *, safe: float, rounded: bool) -> bytes:
    rows = []
    radius = size * 0.22 if rounded else 0
    box = size * safe
    origin = (size - box) / 2
    for py in range(size):
        row = bytearray([0])
        for px in range(size):
            cx, cy = px + 0.5, py + 0.5
            colour = BLUE
            if rounded:
                dx = max(radius - cx, 0, cx - (size - radius))
                dy = max(radius - cy, 0, cy - (size - radius))
                if dx * dx + dy * dy > radius * radius:
                    row += bytes((0, 0, 0, 0))
                    continue
            if inside_arrow((cx - origin) / box, (cy - origin) / box):
                colour = WHITE
            row += bytes((*colour, 255))
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "public" / "icons"
    out.mkdir(parents=True, exist_ok=True)
    (out / "icon-192.png").write_bytes(draw(192, safe=0.62, rounded=True))
    (out / "icon-512.png").write_bytes(draw(512, safe=0.62, rounded=True))
    # Maskable: full bleed, the arrow inside the 80 % safe zone the platforms may crop to.
    (out / "maskable-512.png").write_bytes(draw(512, safe=0.46, rounded=False))
    (out / "apple-touch-icon.png").write_bytes(draw(180, safe=0.55, rounded=False))


if __name__ == "__main__":
    main()
