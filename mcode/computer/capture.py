"""Screen captures as images a model can take, and the map between their pixels and the screen.

    the screen (or one monitor, or a region)      1920x1080 at (0, 0)
        | mss grabs it (X11: XGetImage / XShm)
        | scaled keeping the aspect ratio to fit max_size (1280x800 by default)
        v
    the image the model is shown                  1280x720, PNG (or JPEG)
        coordinates the model sends back are in this space; Geometry.to_screen maps them

A capture never exceeds ``max_bytes`` (the providers' per-image limit, counted before base64:
Anthropic refuses an image over 5 MB): a PNG that comes out larger (photos, noise) is sent as a
JPEG, and one still too large is scaled down further.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

from mcode.computer.display import ComputerUnavailable

__all__ = [
    "MAX_BYTES",
    "MAX_SIZE",
    "Capture",
    "Geometry",
    "ImageFormat",
    "capture",
    "encode",
    "fit",
]

ImageFormat = Literal["png", "jpeg"]
MAX_SIZE = (1280, 800)  # Anthropic's guidance for computer use: about 1.0 megapixel, 16:10
# 5 MB of base64 (Anthropic's per-image limit) is 3.75 MB of image.
MAX_BYTES = 5 * 1024 * 1024 * 3 // 4
JPEG_QUALITY = 80


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where a capture was taken (``left``, ``top``, ``width``, ``height`` in screen pixels)
    and the size it was shown at (``shown``)."""

    left: int
    top: int
    width: int
    height: int
    shown: tuple[int, int]

    @property
    def size_text(self) -> str:
        """The shown size as the model is told it: ``1280x720``."""
        return f"{self.shown[0]}x{self.shown[1]}"

    def contains(self, x: int, y: int) -> bool:
        return 0 <= x < self.shown[0] and 0 <= y < self.shown[1]

    def to_screen(self, x: int, y: int) -> tuple[int, int]:
        """A point of the shown image as a point of the screen. The centre of the shown pixel
        maps to the screen pixel under it, so a scale-down and back lands on the same pixel
        the model saw, never on its neighbour to the top left."""
        sw, sh = self.shown
        sx = self.left + min(self.width - 1, int((x + 0.5) * self.width / sw))
        sy = self.top + min(self.height - 1, int((y + 0.5) * self.height / sh))
        return sx, sy

    def to_shown(self, sx: int, sy: int) -> tuple[int, int]:
        """A point of the screen in the shown image's pixels (``cursor_position``)."""
        sw, sh = self.shown
        x = int((sx - self.left) * sw / self.width)
        y = int((sy - self.top) * sh / self.height)
        return max(0, min(sw - 1, x)), max(0, min(sh - 1, y))


@dataclass(frozen=True, slots=True)
class Capture:
    """One screenshot: the encoded ``data``, its ``media_type`` and where it came from."""

    data: bytes
    media_type: str
    geometry: Geometry


def fit(width: int, height: int, max_size: tuple[int, int] = MAX_SIZE) -> tuple[int, int]:
    """``width x height`` scaled keeping its aspect ratio to fit in ``max_size`` (never up)."""
    scale = min(1.0, max_size[0] / width, max_size[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def capture(
    display: str,
    *,
    monitor: int = 1,
    region: tuple[int, int, int, int] | None = None,
    max_size: tuple[int, int] = MAX_SIZE,
    image_format: ImageFormat = "png",
    max_bytes: int = MAX_BYTES,
) -> Capture:
    """Capture X display ``display``: monitor ``monitor`` (1 the first, 0 all of them as one
    image) or, if given, ``region`` (left, top, width, height in screen pixels)."""
    raw, box = grab(display, monitor=monitor, region=region)
    return encode(raw, box, max_size=max_size, image_format=image_format, max_bytes=max_bytes)


def grab(
    display: str, *, monitor: int = 1, region: tuple[int, int, int, int] | None = None
) -> tuple[Any, tuple[int, int, int, int]]:
    """The screen's pixels as a Pillow RGB image, and the box (left, top, width, height)."""
    mss = _mss()
    from PIL import Image

    opener = getattr(mss, "MSS", None) or mss.mss  # mss 10 has MSS; 9 only mss()
    try:
        with opener(display=display) as sct:
            monitors = sct.monitors
            if region is not None:
                left, top, width, height = region
            else:
                if not 0 <= monitor < len(monitors):
                    raise ComputerUnavailable(
                        f"there is no monitor {monitor} on display {display} "
                        f"(it has {len(monitors) - 1})",
                        hint="set [computer] monitor to 1 for the first, or 0 for all of them",
                    )
                m = monitors[monitor]
                left, top, width, height = m["left"], m["top"], m["width"], m["height"]
            shot = sct.grab({"left": left, "top": top, "width": width, "height": height})
    except mss.exception.ScreenShotError as e:
        raise ComputerUnavailable(
            f"cannot capture X display {display}: {e}",
            hint="check that the display exists and this user may open it (xdpyinfo)",
        ) from None
    image = Image.frombuffer("RGB", shot.size, shot.bgra, "raw", "BGRX", 0, 1)
    return image, (left, top, width, height)


def encode(
    image: Any,
    box: tuple[int, int, int, int],
    *,
    max_size: tuple[int, int] = MAX_SIZE,
    image_format: ImageFormat = "png",
    max_bytes: int = MAX_BYTES,
) -> Capture:
    """``image`` (Pillow, the pixels of ``box``) scaled to fit ``max_size`` and encoded."""
    from PIL import Image

    left, top, width, height = box
    limit = max_size
    fmt = image_format
    while True:
        shown = fit(width, height, limit)
        # BOX (each shown pixel the mean of the screen pixels under it): on a screen of text
        # at 1920x1080 -> 1280x720 it scaled 3x faster than LANCZOS and its PNG was half the
        # size (the sharper filters' ringing round glyphs does not compress); see BENCH.md.
        scaled = image if shown == image.size else image.resize(shown, Image.Resampling.BOX)
        data = _encoded(scaled, fmt)
        if len(data) <= max_bytes:
            geometry = Geometry(left, top, width, height, shown)
            return Capture(data, f"image/{fmt}", geometry)
        if fmt == "png":
            fmt = "jpeg"  # photo-like content: JPEG is a fraction of the size
        else:
            limit = (max(16, shown[0] * 3 // 4), max(16, shown[1] * 3 // 4))


def _encoded(image: Any, fmt: ImageFormat) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        # Level 1 is ~5x faster than the default 6 on screen content and ~10% larger.
        image.save(out, "PNG", compress_level=1)
    else:
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _mss() -> Any:
    try:
        import mss
        import mss.exception
    except ImportError:
        raise ComputerUnavailable(
            "the computer tool needs the mss and Pillow packages, which are not installed",
            hint="pip install 'mcode[computer]'",
        ) from None
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ComputerUnavailable(
            "the computer tool needs the Pillow package, which is not installed",
            hint="pip install 'mcode[computer]'",
        ) from None
    return mss
