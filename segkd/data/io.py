"""Reading dataset files: RGB images, class-index masks and the optional `classes.txt`.

Images go through OpenCV (any format it decodes; grey and RGBA become RGB, 16-bit becomes 8-bit).
Masks go through Pillow, because a palette PNG (the VOC convention) must be read as its indices, not its
colours, and OpenCV always expands palettes. Every failure is a `DataError` that names the file.

`classes.txt` (optional, in the data root): one class per line, in index order. A line is a name, optionally
followed by its colour as three integers 0..255: `sunburn 128 0 0`. Blank lines and `#` comments are skipped.
Either every line gives a colour (a palette) or none does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segkd.errors import DataError
from segkd.outputs import atomic_path, atomic_write

CLASSES_FILE = "classes.txt"


def read_image(path: Path | str) -> np.ndarray:
    """An image file -> H×W×3 uint8 RGB. DataError `path: unreadable image (...)` when missing or corrupt."""
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)  # imdecode from bytes: works with any path encoding
    except OSError:
        raise DataError(f"{path}: unreadable image (file not found)") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"{path}: unreadable image (not a decodable image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # H×W×3 RGB


def read_mask(path: Path | str) -> np.ndarray:
    """A mask file -> H×W uint8 class indices.

    Class-index (greyscale) and palette PNGs are read as their values; an RGB mask is accepted only when its
    three channels are equal (a greyscale saved as RGB). Values above 255 are an error.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            mask = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: missing mask (file not found)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"{path}: unreadable mask (not a decodable image file)") from None
    if mask.ndim == 3:
        if mode in ("LA", "PA"):
            mask = mask[..., 0]
        elif (mask[..., :3] == mask[..., :1]).all():
            mask = mask[..., 0]
        else:
            raise DataError(f"{path}: mask is a colour ({mode}) image; expected class indices "
                            "(a greyscale or palette PNG)")
    if mask.dtype != np.uint8:
        top = int(mask.max()) if mask.size else 0
        if mask.dtype == bool or top <= 255:
            return mask.astype(np.uint8)
        raise DataError(f"{path}: mask value {top} does not fit a uint8 class index")
    return mask


def image_size(path: Path | str) -> tuple[int, int]:
    """(H, W) of an image or mask from its header only (no pixel decode)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"{path}: unreadable image (not a decodable image file)") from None
    return h, w


def read_class_file(root: Path | str) -> tuple[list[str], list[list[int]] | None] | None:
    """Parse `root/classes.txt` -> (names, palette or None); None when the file does not exist."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    names, colours = [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        colour = _trailing_colour(parts)
        names.append(" ".join(parts[:-3] if colour else parts))
        colours.append(colour)
    if not names:
        raise DataError(f"{path}: no class names (one name per line)")
    given = [c is not None for c in colours]
    if any(given) and not all(given):
        missing = names[given.index(False)]
        raise DataError(f"{path}: class '{missing}' has no colour; give 'name r g b' on every line or on none")
    return names, (colours if all(given) else None)


def read_classes(root: Path | str) -> list[str] | None:
    """Class names from `root/classes.txt`, or None when the file does not exist."""
    parsed = read_class_file(root)
    return parsed[0] if parsed else None


def read_palette(root: Path | str) -> list[list[int]] | None:
    """Class colours from `root/classes.txt`, or None when the file is absent or gives no colours."""
    parsed = read_class_file(root)
    return parsed[1] if parsed else None


def write_classes(root: Path | str, names: list[str], palette: list[list[int]] | None = None) -> Path:
    """Write `root/classes.txt` (names, with colours when a palette is given)."""
    path = Path(root) / CLASSES_FILE
    lines = [f"{n} {' '.join(map(str, palette[i]))}" if palette else n for i, n in enumerate(names)]
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_mask(path: Path | str, mask: np.ndarray, palette: list[list[int]] | None = None) -> None:
    """Save H×W uint8 class indices as a PNG: a palette PNG (VOC style) when `palette` is given."""
    im = Image.fromarray(np.ascontiguousarray(mask, np.uint8))  # mode L
    if palette:
        flat = [v for rgb in palette for v in rgb]
        im.putpalette(flat + [0] * (768 - len(flat)))  # L -> P: same indices, now with a colour table
    with atomic_path(path, durable=False) as tmp:
        im.save(tmp, format="PNG", optimize=False)


def _trailing_colour(parts: list[str]) -> list[int] | None:
    """The colour of `name r g b` (a name and three integers 0..255), else None: the line is all name."""
    if len(parts) < 4 or not all(p.isdigit() for p in parts[-3:]):
        return None
    rgb = [int(p) for p in parts[-3:]]
    return rgb if all(v <= 255 for v in rgb) else None
