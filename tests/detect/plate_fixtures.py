"""Rendered Chinese number plates for the plate reader's tests and benchmarks/plates.py.

The plates are drawn here with Pillow and a CJK font (Debian's fonts-noto-cjk); the pixels they are pasted on
and the OCR that reads them are real. A rendered plate is cleaner than a photographed one (no blur, glare,
dirt or perspective), so reading one proves the crop finding and the OCR's wiring, not accuracy on the street.

Layouts follow GA 36 in proportion: a standard (blue) plate is 440 x 140 mm, white characters and border on
blue; a small new-energy plate is 480 x 140 mm, black characters on a green gradient (pale at the top).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts/opentype"),
    Path("/usr/share/fonts"),
)

BLUE_BGR = (160, 70, 10)  # the plate's blue (about RGB 10, 70, 160)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def cjk_font() -> Path | None:
    """A bold Noto Sans CJK face (.ttc) under /usr/share/fonts, or None when fonts-noto-cjk is missing."""
    for folder in FONT_DIRS:
        if folder.is_dir():
            found = sorted(folder.rglob("NotoSansCJK-Bold.ttc")) or sorted(folder.rglob("NotoSansCJK*.ttc"))
            if found:
                return found[0]
    return None


def bus_jpg() -> Path:
    """ultralytics' bundled street photo (a Madrid bus, 810 x 1080), shipped inside its PyPI package
    (found without importing ultralytics)."""
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None, "ultralytics is not installed"
    return Path(spec.origin).parent / "assets" / "bus.jpg"


def read_image(path: Path) -> np.ndarray:
    """The image at `path` (BGR uint8); an AssertionError naming it when OpenCV cannot read it."""
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image


def render_plate(text: str, *, font: Path, width_px: int = 150) -> np.ndarray:
    """A plate image (BGR, uint8) `width_px` wide: blue and white for 7 characters, the new-energy green
    gradient with black characters for 8. Drawn at 4 px/mm, then scaled down (INTER_AREA)."""
    new_energy = len(text) == 8
    w_mm, h_mm = (480, 140) if new_energy else (440, 140)
    scale = 4
    w, h = w_mm * scale, h_mm * scale
    if new_energy:
        top, bottom = np.array([235, 250, 235], float), np.array([60, 190, 90], float)  # RGB
        ramp = np.linspace(0.0, 1.0, h)[:, None, None]
        rgb = (top * (1 - ramp) + bottom * ramp) * np.ones((h, w, 3))
        image = Image.fromarray(rgb.astype(np.uint8), "RGB")
        ink = BLACK
    else:
        image = Image.new("RGB", (w, h), BLUE_BGR[::-1])
        ink = WHITE
    draw = ImageDraw.Draw(image)
    inset = 3 * scale
    draw.rounded_rectangle(
        (inset, inset, w - inset, h - inset), radius=6 * scale, outline=ink, width=2 * scale
    )
    face = ImageFont.truetype(str(font), size=100 * scale)
    # Characters 45 x 90 mm on a 57 mm pitch (12 mm apart), 34 mm apart after the city letter, with a dot.
    char_w, char_h, space, wide_space = 45 * scale, 90 * scale, 12 * scale, 34 * scale
    total = len(text) * char_w + (len(text) - 2) * space + wide_space
    x = (w - total) // 2
    y = (h - char_h) // 2
    for i, char in enumerate(text):
        image.paste(ink, (x, y), _glyph_mask(char, face, (char_w, char_h)))
        x += char_w
        if i == 1:
            centre, dot = x + wide_space // 2, 5 * scale
            draw.ellipse((centre - dot, h // 2 - dot, centre + dot, h // 2 + dot), fill=ink)
            x += wide_space
        else:
            x += space
    bgr = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
    height_px = round(width_px * h_mm / w_mm)
    return cv2.resize(bgr, (width_px, height_px), interpolation=cv2.INTER_AREA)


def render_two_row_plate(text: str, *, font: Path, width_px: int = 120) -> np.ndarray:
    """A large vehicle's yellow rear plate (440 x 220 mm, black characters; BGR uint8) `width_px` wide:
    the province and city letter (80 x 60 mm) above, the 5-character serial (65 x 110 mm) below."""
    if len(text) != 7:
        raise ValueError(f"a two-row plate has 7 characters: {text!r}")
    scale = 4
    w, h = 440 * scale, 220 * scale
    image = Image.new("RGB", (w, h), (250, 190, 20))
    draw = ImageDraw.Draw(image)
    inset = 3 * scale
    draw.rounded_rectangle(
        (inset, inset, w - inset, h - inset), radius=6 * scale, outline=BLACK, width=2 * scale
    )
    face = ImageFont.truetype(str(font), size=100 * scale)
    top_w, top_h, top_gap = 80 * scale, 60 * scale, 40 * scale
    x = (w - 2 * top_w - top_gap) // 2
    for char in text[:2]:
        image.paste(BLACK, (x, 15 * scale), _glyph_mask(char, face, (top_w, top_h)))
        x += top_w + top_gap
    low_w, low_h, low_gap = 65 * scale, 110 * scale, 15 * scale
    x = (w - 5 * low_w - 4 * low_gap) // 2
    for char in text[2:]:
        image.paste(BLACK, (x, 90 * scale), _glyph_mask(char, face, (low_w, low_h)))
        x += low_w + low_gap
    bgr = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
    return cv2.resize(bgr, (width_px, width_px // 2), interpolation=cv2.INTER_AREA)


def _glyph_mask(char: str, face: ImageFont.FreeTypeFont, size: tuple[int, int]) -> Image.Image:
    """The character's ink as an "L" mask stretched to `size` (plates use condensed characters)."""
    left, top, right, bottom = (round(v) for v in face.getbbox(char))
    tile = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(tile).text((-left, -top), char, font=face, fill=255)
    return tile.resize(size, Image.Resampling.LANCZOS)


def paste(image: np.ndarray, patch: np.ndarray, top_left: tuple[int, int]) -> np.ndarray:
    """A copy of `image` with `patch` pasted at (x, y) pixels."""
    out = image.copy()
    x, y = top_left
    ph, pw = patch.shape[:2]
    out[y : y + ph, x : x + pw] = patch
    return out
