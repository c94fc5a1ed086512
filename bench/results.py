"""Appending a benchmark's table to `bench/RESULTS.md`, under a dated heading and the command
that reproduces it (the `--write` option of the bench scripts)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def this_command() -> str:
    """The command line that ran this script, as `python bench/<script> <args>`."""
    return " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def append_results(heading: str, cmd: str, text: str) -> None:
    """Append `heading (date)`, the command `cmd` and the table `text` to RESULTS.md."""
    with open(RESULTS, "a") as fh:
        fh.write(f"\n{heading} ({time.strftime('%Y-%m-%d')})\n\n`{cmd}`\n\n{text}\n")
