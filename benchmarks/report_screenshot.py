"""Open a demo report in headless Chromium and save a screenshot of the whole page.

    python benchmarks/report_screenshot.py runs/demo/report.html [--out shot.png] [--width 1280] [--height 3200]

Chromium comes from the OS packages (`apt-get install -y chromium`; Ubuntu: `chromium-browser`). The page is
loaded from disk with the network disabled, so an image that is not embedded shows as broken. Prints the browser,
the page, the screenshot's size and the seconds it took.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    sys.exit(f"error: no headless browser found (tried {', '.join(BROWSERS)}); apt-get install -y chromium")


def screenshot(page: Path, out: Path, width: int, height: int) -> float:
    browser = find_browser()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                        f"--window-size={width},{height}", f"--screenshot={out.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="PNG (default: <report>.png beside the report)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3200)
    args = parser.parse_args()
    if not args.report.is_file():
        sys.exit(f"error: {args.report}: no such file")
    out = args.out or args.report.with_suffix(".png")
    seconds = screenshot(args.report, out, args.width, args.height)
    with Image.open(out) as shot:
        size = shot.size
    print(f"{'browser':<10} {find_browser()}")
    print(f"{'page':<10} {args.report} ({args.report.stat().st_size / 1e6:.2f} MB)")
    print(f"{'shot':<10} {out} ({size[0]}×{size[1]} px)")
    print(f"{'seconds':<10} {seconds:.1f}")


if __name__ == "__main__":
    main()
