"""Open an HTML page in Debian's headless Chromium and look at what it drew."""

import asyncio
import shutil
import subprocess
from pathlib import Path

from PIL import Image

NHS_BLUE = (0, 94, 184)
NHS_GREEN = (0, 150, 57)


def chromium_missing() -> bool:
    return shutil.which("chromium") is None


async def screenshot(page: Path, folder: Path, height: int = 1400) -> dict[tuple[int, ...], int]:
    """Render `page` as a person's browser would, offline; return how many pixels of each colour."""
    shot = folder / (page.stem + ".png")
    await asyncio.to_thread(
        subprocess.run,
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={folder / 'profile'}",
            f"--window-size=900,{height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    image = Image.open(shot).convert("RGB")
    return {rgb: n for n, rgb in image.getcolors(maxcolors=1_000_000) or [] if isinstance(rgb, tuple)}
