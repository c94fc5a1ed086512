"""Reply parsing and a fault-injecting server: what becomes a label, and what a run keeps.

    .venv/bin/python bench/bench_parsers.py [--concepts 150] [--write]

1. The parser table: every reply of `tests/reply_table.py` (refusals in many wordings,
   preambles, fences, JSON, reasoning blocks, NA, truncation, ...) -> status and label; then,
   side by side with the parser of git revision `--baseline` (loaded in the same process), how
   many replies of the independently written `tests/reply_table_independent.py` (and of any
   further held-out table `--heldout FILE` defining REPLIES_HELDOUT) each gets exactly right,
   and how many non-labels each stores as labels.
2. A fault run: the real `LLMAnnotator` (official `openai` client) on synthetic concepts
   against a local server (127.0.0.1) whose replies cycle through 429 with Retry-After, 500,
   a malformed body, a hang past the client timeout, and realistic label and refusal replies.
   Then a run where the server goes away after 50 requests (circuit breaker).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llm_server import Drop, Hang, LLMServer, Malformed, Reply, Status  # noqa: E402
from reply_table import REPLIES  # noqa: E402
from reply_table_independent import REPLIES_INDEPENDENT  # noqa: E402
from results import append_results, this_command  # noqa: E402

from concepts.annotation.annotators import LLMAnnotator  # noqa: E402
from concepts.annotation.cache import ReplyCache  # noqa: E402
from concepts.annotation.client import LLMClient  # noqa: E402
from concepts.annotation.openai_backend import OpenAIChat  # noqa: E402
from concepts.annotation.prompts import get_prompt  # noqa: E402
from concepts.discovery.records import Concept, Member  # noqa: E402

log = logging.getLogger("bench_parsers")
R = "\u2019"
ANSWERS = [Reply("Animals"), Reply("Sure! Here is the label:\nBody parts"), Reply(f"I{R}m sorry, but I can{R}t help."),
           Reply("```json\n{\"label\": \"Colors\"}\n```"), Reply("<think>hmm</think>\nWeekdays"), Reply("N/A"),
           Reply("Words that describe the", "length"), Reply("Unfortunately, I cannot label this.")]


def baseline_prompts(rev: str):
    """The prompts module (with its parsers) of git revision `rev`, or None if it cannot be read."""
    root = Path(__file__).resolve().parent.parent
    try:
        src = subprocess.run(["git", "show", f"{rev}:concepts/annotation/prompts.py"], cwd=root, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "baseline_prompts.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("baseline_prompts", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["baseline_prompts"] = mod
    spec.loader.exec_module(mod)
    return mod


def score_table(get, rows) -> tuple[int, int]:
    """(replies whose status and label are exactly right, non-labels stored as labels)."""
    right = leaked = 0
    for _, pid, reply, finish, status, label in rows:
        p = get(pid).parse(reply, finish)
        if p.status == status and (p.label in label if isinstance(label, tuple) else p.label == label):
            right += 1
        elif status != "ok" and p.status == "ok":
            leaked += 1
    return right, leaked


def compare_parsers(baseline: str, heldout: str | None) -> list[str]:
    tables = {"tests/reply_table_independent.py": REPLIES_INDEPENDENT}
    if heldout:
        spec = importlib.util.spec_from_file_location("heldout_table", heldout)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        tables[heldout] = mod.REPLIES_HELDOUT
    old = baseline_prompts(baseline)
    lines = ["", f"Parsers side by side (baseline: the parser of {baseline}):", "",
             "| table | replies | non-labels | parser | exactly right | non-labels stored as labels |",
             "|---|---:|---:|---|---:|---:|"]
    for name, rows in tables.items():
        n_bad = sum(r[4] != "ok" for r in rows)
        for tag, get in ((baseline, old.get_prompt if old else None), ("this tree", get_prompt)):
            if get is None:
                continue
            right, leaked = score_table(get, rows)
            lines.append(f"| {name} | {len(rows)} | {n_bad} | {tag} | {right} | {leaked} |")
    return lines


def concepts(n: int) -> list[Concept]:
    return [Concept.build("bench", 0, n, i, [Member(f"w{i}_{j % 5}", j, 0) for j in range(20)]) for i in range(n)]


def fault_responder(request, n):
    kind = n % 12
    if kind == 0:
        return Status(429, {"Retry-After": "0.2"})
    if kind == 1:
        return Status(500)
    if kind == 2:
        return Malformed()
    if kind == 3 and n < 40:
        return Hang(2.5)
    return ANSWERS[n % len(ANSWERS)]


def run(server, cs, tmp, name, **client_kw):
    client = LLMClient(OpenAIChat("bench-model", server.base_url, timeout=2.0), ReplyCache(Path(tmp) / f"{name}.sqlite"),
                       concurrency=8, backoff_base=0.05, backoff_max=0.5, **client_kw)
    ann = LLMAnnotator(client, get_prompt("default"), progress=False, fallback_unique=False)
    t0 = time.perf_counter()
    anns = ann.annotate(cs, [])
    return anns, client, time.perf_counter() - t0


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--concepts", type=int, default=150)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--baseline", default="93042fd", help="git revision whose parser is the baseline")
    ap.add_argument("--heldout", default=None, help="a further table file defining REPLIES_HELDOUT")
    args = ap.parse_args()
    lines = ["| reply kind | prompt | status | label |", "|---|---|---|---|"]
    for kind, pid, reply, finish, _, _ in REPLIES:
        p = get_prompt(pid).parse(reply, finish)
        lines.append(f"| {kind}{' (finish_reason ' + finish + ')' if finish != 'stop' else ''} | {pid} | {p.status} | "
                     f"{p.label if p.label is not None else '-'} |")
    lines += compare_parsers(args.baseline, args.heldout)
    cs = concepts(args.concepts)
    with tempfile.TemporaryDirectory() as tmp:
        with LLMServer(fault_responder) as server:
            anns, client, dt = run(server, cs, tmp, "faults")
        counts = Counter(a.status for a in anns)
        u = client.usage
        lines += ["", f"Fault run: {len(cs)} concepts, {len(server.requests)} requests seen by the server, "
                      f"{dt:.1f} s.", "", "| outcome | concepts |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
        lines += ["", f"Client: {u.requests} requests, {u.answered} answered, {u.retries} retries, {u.failed} failed, "
                      f"{u.cached} shared or cached."]
        state = {}
        with LLMServer(lambda r, n: Reply("Animals")) as server:
            def responder(request, n):
                if n == 50 and "gone" not in state:
                    state["gone"] = True
                    server.go_away()
                return Reply("Animals") if n < 50 else Drop()
            server.responder = responder
            anns, client, dt = run(server, cs, tmp, "gone")
        counts = Counter(a.status for a in anns)
        lines += ["", f"Server gone after 50 requests: stopped after {dt:.1f} s with \"{client.broken}\"; "
                      f"{client.usage.answered} replies kept in the cache; outcomes "
                      + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        append_results("## Reply parsing and a fault-injecting server", this_command(), text)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    main()
