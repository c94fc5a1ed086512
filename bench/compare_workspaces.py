"""Do two workspaces hold the same results? Every file of A against the same path in B, byte for
byte; where bytes differ, JSON is compared without timing fields and with the two workspaces'
(and code trees') paths made equal, tables without timing columns, HTML line by line.

Used to check that a refactor changes no output: run the same command with the old and the new
code into two workspaces, then

    python bench/compare_workspaces.py /tmp/ident/old/ws /tmp/ident/new/ws --code /work/wt_old /work/main

W&B run folders and Hydra's log folders (run-specific by nature) are left out.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
from pathlib import Path

import pandas as pd

TIME = re.compile(r"(seconds|_s$|^took|time|written|stages|started|loop)", re.I)


def _same_json(a: bytes, b: bytes, swap) -> bool:
    def norm(o):
        if isinstance(o, dict):
            return {k: norm(v) for k, v in o.items() if not TIME.search(k)}
        if isinstance(o, list):
            return [norm(v) for v in o]
        return swap(o) if isinstance(o, str) else o

    return norm(json.loads(a)) == norm(json.loads(b))


def compare(old: Path, new: Path, code: tuple[str, str] | None) -> tuple[int, list[str]]:
    def swap(s: str) -> str:
        s = s.replace(str(old.parent), str(new.parent))
        return s.replace(code[0], code[1]) if code else s

    same, notes = 0, []
    files = sorted(p for p in old.rglob("*") if p.is_file() and not {"wandb", "logs"} & set(p.relative_to(old).parts))
    for f in files:
        g, rel = new / f.relative_to(old), f.relative_to(old)
        if not g.exists():
            notes.append(f"missing in B: {rel}")
            continue
        a, b = f.read_bytes(), g.read_bytes()
        if a == b or (f.suffix == ".json" and _same_json(a, b, swap)):
            same += 1
            continue
        if f.suffix in (".csv", ".parquet"):
            read = pd.read_csv if f.suffix == ".csv" else pd.read_parquet
            da, db = read(f), read(g)
            cols = [c for c in da.columns if c not in db.columns or not da[c].equals(db[c])]
            if all(TIME.search(c) for c in cols):
                same += 1
                continue
            notes.append(f"{rel}: columns {cols} differ")
        elif f.suffix in (".html", ".json"):
            sm = difflib.SequenceMatcher(None, swap(a.decode()), b.decode(), autojunk=False)
            parts = [f"{b.decode()[j1:j2]!r}" for op, _, _, j1, j2 in sm.get_opcodes() if op != "equal"]
            notes.append(f"{rel}: differs in {len(parts)} places: {', '.join(parts[:4])}")
        else:
            notes.append(f"{rel}: bytes differ")
    return same, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--code", nargs=2, metavar=("A_TREE", "B_TREE"), help="the code trees, whose paths manifests record")
    args = ap.parse_args()
    same, notes = compare(args.a.resolve(), args.b.resolve(), tuple(args.code) if args.code else None)
    print(f"{same} files the same (bytes, or JSON/tables without timings and paths); {len(notes)} differ")
    for n in notes:
        print("  " + n)


if __name__ == "__main__":
    main()
