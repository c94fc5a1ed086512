"""Label scoring (after delphi's detection scoring): does a label pick out its concept's words?

For a labelled concept, the scorer LLM sees the label and a shuffled list of words:
`positives` word types of the concept (types the labeller was not shown come first, then the
others) and one word type each from `random_negatives` random other concepts and from the
`near_negatives` concepts whose centroids are nearest (the hard cases); a negative never
shares a type with the concept. Precision, recall and F1 of the words it picks against the
concept's own go into the annotation's `scores`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from concepts.annotation.client import LLMClient
from concepts.annotation.prompts import cap_words, detection_messages, parse_detection
from concepts.discovery.records import Annotation, Concept


@dataclass
class Trial:
    concept: Concept
    annotation: Annotation
    words: list[str]
    is_positive: list[bool]


def centroids(concepts: list[Concept], vectors: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """`[n_concepts, d]` mean vector of each concept's members (`vectors[(sentence, position)]`)."""
    return np.stack([np.mean([vectors[(m.sentence, m.position)] for m in c.members], axis=0) for c in concepts])


def build_trials(concepts: list[Concept], labelled: list[tuple[Concept, Annotation]], cents: np.ndarray | None,
                 positives: int, random_negatives: int, near_negatives: int, max_words: int, seed: int) -> list[Trial]:
    rng = random.Random(seed)
    index = {c.concept_id: i for i, c in enumerate(concepts)}
    trials = []
    for c, ann in labelled:
        shown = set(cap_words(c.type_counts, max_words))
        unseen = [w for w in c.type_counts if w not in shown]
        seen = [w for w in c.type_counts if w in shown]
        rng.shuffle(unseen)
        rng.shuffle(seen)
        pos = (unseen + seen)[:positives]
        own = set(c.type_counts)
        others = [o for o in concepts if o.concept_id != c.concept_id]
        near = []
        if near_negatives and cents is not None:
            d = np.linalg.norm(cents - cents[index[c.concept_id]], axis=1)
            order = [concepts[j] for j in np.argsort(d, kind="stable") if concepts[j].concept_id != c.concept_id]
            near = order[:near_negatives]
        far = rng.sample(others, min(random_negatives, len(others)))
        neg: list[str] = []
        for o in near + far:
            options = [w for w in o.type_counts if w not in own and w not in neg]
            if options:
                neg.append(rng.choice(options))
        words = [(w, True) for w in pos] + [(w, False) for w in neg]
        rng.shuffle(words)
        trials.append(Trial(c, ann, [w for w, _ in words], [p for _, p in words]))
    return trials


def score(chosen: list[int], is_positive: list[bool]) -> dict:
    n_pos = sum(is_positive)
    tp = sum(1 for i in chosen if is_positive[i])
    precision = tp / len(chosen) if chosen else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "positives": n_pos, "negatives": len(is_positive) - n_pos}


async def _run(client: LLMClient, trials: list[Trial], progress: bool) -> list[dict]:
    client.start()
    bar = tqdm(total=len(trials), desc="score labels", unit="concept", disable=not progress)

    async def one(t: Trial) -> dict:
        r = await client.chat(detection_messages(t.annotation.label, t.words), json_mode=True)
        bar.update()
        if r.error:
            return {"status": "error", "scorer": client.backend.model}
        status, chosen = parse_detection(r.text, r.finish_reason, len(t.words))
        out = {"status": status, "scorer": client.backend.model, "words": t.words}
        if chosen is not None:
            out.update(score(chosen, t.is_positive))
        return out

    try:
        return await asyncio.gather(*(one(t) for t in trials))
    finally:
        bar.close()


def score_trials(client: LLMClient, trials: list[Trial], progress: bool = True) -> list[dict]:
    """Ask the scorer about every trial; the scores of each (with its status) in order."""
    return asyncio.run(_run(client, trials, progress))
