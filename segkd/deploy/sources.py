"""What `segkd predict` reads: image files, folders, glob patterns and video files.

- A file is taken as given: a video when its extension says so, otherwise an image (decoded to find out).
- A folder contributes its image and video files (by extension, sorted, not recursive); other files are
  skipped and counted.
- A pattern (`*`, `?`, `[`) contributes what it matches, by the same rule as a folder.
A SOURCE that matches nothing is a failure naming it; the rest still runs.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


@dataclass
class Sources:
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (SOURCE, reason)
    skipped: int = 0  # files in folders / matches that are neither images nor videos
    read: list[Path] = field(default_factory=list)  # given files and listed folders: the output guard's inputs

    @property
    def count(self) -> int:
        return len(self.images) + len(self.videos)


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def glob_base(pattern: str) -> Path:
    """The folder a pattern lists: its path up to the first component with `*`, `?` or `[`."""
    parts = Path(pattern).parts
    plain = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    return Path(*parts[:plain]) if plain else Path(".")


def collect_sources(specs: list[str]) -> Sources:
    """Expand every SOURCE into image and video paths, in the order given, without duplicates."""
    found = Sources()
    seen: set[Path] = set()

    def add(path: Path, explicit: bool) -> None:
        if path.resolve() in seen:
            return
        if is_video(path):
            found.videos.append(path)
        elif explicit or path.suffix.lower() in IMAGE_EXTS:
            found.images.append(path)
        else:
            found.skipped += 1
            return
        seen.add(path.resolve())

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found.read.append(path)
            files = sorted(p for p in path.iterdir() if p.is_file())
            if not files:
                found.missing.append((spec, "empty folder"))
            for p in files:
                add(p, explicit=False)
        elif path.is_file():
            found.read.append(path)
            add(path, explicit=True)
        elif glob.has_magic(spec):
            found.read.append(glob_base(spec))
            matches = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
            if not matches:
                found.missing.append((spec, "no file matches the pattern"))
            for p in matches:
                add(p, explicit=False)
        else:
            found.missing.append((spec, "no such file or folder"))
    return found
