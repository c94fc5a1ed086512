"""`python -m concepts.score`: score the LLM labels of a run by detection (see
concepts/annotation/scoring.py). The scorer is the `annotator=` group (openai or hf_local).

Writes each annotation's `scores` into the concept records, `scores-K{K}.csv` (one row per
concept) and `scores-K{K}-layers.csv` (means per layer) in the concepts folder, and refreshes
the concept explorer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from concepts.annotation.cache import ReplyCache
from concepts.annotation.config import ScoreConfig
from concepts.annotation.factory import make_client
from concepts.annotation.scoring import build_trials, centroids, score_trials
from concepts.annotation.stage import open_concepts
from concepts.core.artifacts import atomic_write_text
from concepts.core.config import validate
from concepts.core.errors import UserError
from concepts.extraction.store import row_index

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    concepts: Path
    per_concept: pd.DataFrame  # layer, concept_id, label, prompt_id, status, precision, recall, f1
    per_layer: pd.DataFrame  # layer, scored, precision, recall, f1
    seconds: float


def run(cfg: DictConfig | ScoreConfig) -> ScoreResult:
    t0 = time.perf_counter()
    cfg = validate(cfg, ScoreConfig)
    if cfg.annotator.backend == "alignment":
        raise UserError("label scoring needs an LLM: use annotator=openai (with annotator.base_url for a local "
                        "server) or annotator=hf_local")
    crun = open_concepts(cfg)
    sc = cfg.scoring
    tokens = crun.store.tokens()
    row_of = row_index(tokens)
    by_layer, trials = {}, []
    for layer in crun.layers:
        concepts = crun.read(layer)
        by_layer[layer] = concepts
        labelled = [(c, a) for c in concepts for a in c.annotations
                    if a.annotator != "alignment" and a.status == "ok" and a.label
                    and (sc.label_prompt is None or a.prompt_id == sc.label_prompt)]
        if not labelled:
            continue
        cents = None
        if sc.near_negatives:
            keys = [(m.sentence, m.position) for c in concepts for m in c.members]
            X = np.asarray(crun.store.layer(layer)[np.array([row_of[k] for k in keys])], dtype=np.float32)
            cents = centroids(concepts, dict(zip(keys, X)))
        trials += build_trials(concepts, labelled, cents, sc.positives, sc.random_negatives, sc.near_negatives,
                               cfg.prompt.max_words, sc.seed + layer)
    if not trials:
        raise UserError(f"no usable LLM label in {crun.path}; run concepts.annotate with annotator=openai first")
    cache = ReplyCache(cfg.annotation.cache)
    try:
        client = make_client(cfg, cache)
        results = score_trials(client, trials, cfg.extraction.progress)
    finally:
        cache.close()
    if client.usage.answered + client.usage.cached == 0:
        raise UserError(f"no scoring request was answered ({client.broken or 'every request failed'}); no record "
                        "was changed. Check the server and re-run")
    rows = []
    for t, s in zip(trials, results):
        if s["status"] == "ok" or not (t.annotation.scores or {}).get("status") == "ok":
            t.annotation.scores = s  # never replace a score with a failed attempt
        rows.append({"layer": t.concept.layer, "concept_id": t.concept.concept_id, "label": t.annotation.label,
                     "prompt_id": t.annotation.prompt_id, "status": s["status"],
                     **{k: s.get(k) for k in ("precision", "recall", "f1")}})
    for layer, concepts in by_layer.items():
        crun.write(layer, concepts)
    per_concept = pd.DataFrame(rows)
    ok = per_concept[per_concept["status"] == "ok"]
    per_layer = ok.groupby("layer")[["precision", "recall", "f1"]].mean().reset_index()
    per_layer.insert(1, "scored", ok.groupby("layer").size().to_numpy())
    atomic_write_text(crun.path / f"scores-K{crun.k}.csv", per_concept.to_csv(index=False))
    atomic_write_text(crun.path / f"scores-K{crun.k}-layers.csv", per_layer.to_csv(index=False))
    u = client.usage
    if client.broken:
        raise UserError(f"{client.broken}. The {u.answered + u.cached} scores received so far are kept (records and "
                        f"{crun.path / f'scores-K{crun.k}.csv'}); re-run when the server is back")
    log.info("scored %d labels (%d unusable replies); mean F1 %.3f; requests sent %d, from cache %d",
             len(ok), len(per_concept) - len(ok), ok["f1"].mean() if len(ok) else float("nan"), u.requests, u.cached)
    if cfg.discovery.explorer:
        from concepts.annotation.dataset import check_label_source, views_source
        from concepts.discovery.explorer import write_explorer

        # the folder's label of record: the one given, else the one its last annotation chose
        source = check_label_source(cfg, by_layer, crun.path) if cfg.annotation.label_source else views_source(
            crun.path, crun.k)
        write_explorer(crun.path / f"explorer-K{crun.k}.html", by_layer, crun.sentences(),
                       f"{cfg.model.name or cfg.model.name_or_path} · {cfg.corpus.name} · K={crun.k}",
                       label_source=source)
    return ScoreResult(crun.path, per_concept, per_layer, time.perf_counter() - t0)
