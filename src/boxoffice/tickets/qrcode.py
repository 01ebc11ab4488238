"""A ticket token's QR code: error correction M, the 4-module quiet zone, as PNG, SVG or a
grey-scale image for the PDF.

The symbol is built by zxing-cpp (its writer is zint, in C): it picks the version and the
mask with the lowest penalty score as the QR standard asks, in ~0.3 ms for a 119-character
token. A pure-Python encoder spent ~10 ms on the same code, mostly scoring the eight masks,
which made a two-ticket confirmation mail the costliest part of a purchase.
"""

from __future__ import annotations

import io

import zxingcpp
from PIL import Image

ERROR_CORRECTION = "M"


def _symbol(token: str) -> zxingcpp.Barcode:
    return zxingcpp.create_barcode(token, zxingcpp.BarcodeFormat.QRCode, ec_level=ERROR_CORRECTION)


def qr_image(token: str, pixels_per_module: int) -> Image.Image:
    """Black modules on white, quiet zone included, `pixels_per_module` pixels a module."""
    matrix = _symbol(token).to_image(scale=1, add_quiet_zones=True)
    height, width = matrix.shape
    # The matrix is a buffer of one byte a module (0 dark, 255 light).
    image = Image.frombytes("L", (width, height), memoryview(matrix))  # type: ignore[arg-type]
    if pixels_per_module == 1:
        return image
    return image.resize(
        (width * pixels_per_module, height * pixels_per_module), Image.Resampling.NEAREST
    )


def qr_png(token: str, pixels_per_module: int = 8) -> bytes:
    buffer = io.BytesIO()
    # A 1-bit PNG: a few hundred bytes for a ticket's code.
    qr_image(token, pixels_per_module).convert("1", dither=Image.Dither.NONE).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def qr_svg(token: str, pixels_per_module: int = 8) -> bytes:
    return _symbol(token).to_svg(scale=pixels_per_module, add_quiet_zones=True).encode("utf-8")
