"""Annotation throughput against a local OpenAI-compatible server with a fixed latency per request.

    .venv/bin/python bench/bench_annotate.py [--concepts 160] [--latency 0.2]

Runs the real LLMAnnotator (official `openai` client) on synthetic concepts at concurrency 1
and 16, each with a fresh cache, then repeats the concurrency-16 run on its filled cache and
counts the requests the server saw.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llm_server import LLMServer, Reply  # noqa: E402

from concepts.annotation.annotators import LLMAnnotator  # noqa: E402
from concepts.annotation.cache import ReplyCache  # noqa: E402
from concepts.annotation.client import LLMClient  # noqa: E402
from concepts.annotation.openai_backend import OpenAIChat  # noqa: E402
from concepts.annotation.prompts import get_prompt  # noqa: E402
from concepts.discovery.records import Concept, Member  # noqa: E402

log = logging.getLogger("bench_annotate")


def concepts(n: int) -> list[Concept]:
    return [Concept.build("bench", 0, n, i, [Member(f"w{i}_{j % 7}", j, 0) for j in range(40)]) for i in range(n)]


def annotate(server: LLMServer, cache: ReplyCache, cs: list[Concept], concurrency: int) -> tuple[float, int]:
    before = len(server.requests)
    client = LLMClient(OpenAIChat("bench-model", server.base_url), cache, concurrency=concurrency)
    t0 = time.perf_counter()
    anns = LLMAnnotator(client, get_prompt("default"), progress=False).annotate(cs, [])
    dt = time.perf_counter() - t0
    assert all(a.status == "ok" for a in anns)
    return dt, len(server.requests) - before


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--concepts", type=int, default=160)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    cs = concepts(args.concepts)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LLMServer(lambda r, n: Reply("Some label"), latency=args.latency) as server:
        for conc in (1, 16):
            cache = ReplyCache(Path(tmp) / f"c{conc}.sqlite")
            dt, sent = annotate(server, cache, cs, conc)
            rows.append((f"concurrency {conc}", dt, sent))
            if conc == 16:
                dt2, sent2 = annotate(server, cache, cs, conc)
                rows.append(("concurrency 16, re-run", dt2, sent2))
            cache.close()
        peak = server.max_in_flight
    base = rows[0][1]
    log.info("%d concepts, %.0f ms per request; most requests in flight: %d", args.concepts, args.latency * 1000, peak)
    log.info("| run | seconds | concepts/s | speed-up | requests sent |")
    log.info("|---|---:|---:|---:|---:|")
    for name, dt, sent in rows:
        log.info("| %s | %.2f | %.1f | %.1fx | %d |", name, dt, args.concepts / dt, base / dt, sent)


if __name__ == "__main__":
    main()
