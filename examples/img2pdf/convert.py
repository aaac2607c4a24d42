"""Turn images (PNG, JPEG, anything Pillow reads) into one PDF, one page per image.

Kept apart from the handler so the conversion is tested on its own, with no
coordinator or worker: it takes bytes and returns bytes, and touches no files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError


class NotAnImage(ValueError):
    """An input that Pillow cannot read as an image."""


def _page(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise NotAnImage(
            f"input {name or '<unnamed>'} is not an image Pillow can read: "
            "give PNG or JPEG files"
        ) from exc
    # PDF pages have no alpha channel and no palette: flatten onto white.
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        page = Image.new("RGB", rgba.size, "white")
        page.paste(rgba, mask=rgba.getchannel("A"))
        return page
    if image.mode not in ("RGB", "L", "CMYK"):
        return image.convert("RGB")
    return image


def images_to_pdf(images: Sequence[tuple[str, bytes]], *, resolution: float = 72.0) -> bytes:
    """One PDF from ``(name, bytes)`` pairs, pages in the order given.

    ``resolution`` is in dots per inch: at 72 one pixel is one PDF point.
    Raises :class:`NotAnImage` (a ``ValueError``) for unreadable input and for none.
    """
    if not images:
        raise NotAnImage("no images were given: attach at least one PNG or JPEG blob")
    pages = [_page(data, name) for name, data in images]
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:],
                  resolution=resolution)
    return out.getvalue()


__all__ = ["NotAnImage", "images_to_pdf"]
