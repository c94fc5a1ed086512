"""Screenshots of the HTML a run writes, taken in headless Chromium (the check issue 14 asks for).

    .venv/bin/python bench/screenshots.py workspace/report/minilm-ewt [more report folders] --out bench/screenshots

Writes report.png (the first report's page), explorer.png (its concept explorer) and, with two or
more report folders, compare.png (their comparison page, written to a temporary folder).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger("screenshots")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--virtual-time-budget=5000"]


def shoot(page: Path, out: Path, size: str) -> Path:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise SystemExit("Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={out.resolve()}",
                        page.resolve().as_uri()], check=True, capture_output=True, timeout=180)
    log.info("%s (%d kB)", out, out.stat().st_size // 1000)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/screenshots"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    first = args.reports[0]
    shoot(first / "index.html", args.out / "report.png", "1280,5200")
    shoot(first / "explorer.html", args.out / "explorer.png", "1280,1100")
    if len(args.reports) > 1:
        from neurons.compare import write_comparison

        with tempfile.TemporaryDirectory() as page:
            shoot(write_comparison(args.reports, Path(page)), args.out / "compare.png", "1280,2000")


if __name__ == "__main__":
    main()
