import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_cfg, extract_overrides
from llm_server import Hang, LLMServer, Malformed, Reply, Status, user_text

import concepts.annotation.stage as annotate_mod
import concepts.discovery.stage as discover_mod
from concepts.annotation.annotators import AlignmentAnnotator, LLMAnnotator
from concepts.annotation.cache import ReplyCache
from concepts.annotation.client import LLMClient
from concepts.annotation.dataset import read_parquet
from concepts.annotation.formats.cluster_lines import read_tcn
from concepts.annotation.human_eval import fleiss_kappa, summarize
from concepts.annotation.openai_backend import OpenAIChat
from concepts.annotation.prompts import PROMPTS, cap_words, get_prompt
from concepts.core.errors import UserError
from concepts.discovery.records import Concept, Member, read_concepts

SECRET = "sk-test-DO-NOT-LEAK-4242"


def words_of(request) -> list[str]:
    text = user_text(request)
    return text.split("[", 1)[1].split("]", 1)[0].split(", ")


def label_responder(request, n):
    return Reply(f"Label: words like {words_of(request)[0]}.")


def _concept(counts: dict[str, int], cid=0) -> Concept:
    members = [Member(w, i, 0) for w, k in counts.items() for i in range(k)]
    return Concept.build("m", 1, 2, cid, members)


# ---------------------------------------------------------------- prompts and parsing

def test_cap_words_rule():
    assert cap_words({"a": 2, "b": 1}, 10) == ["a", "a", "b"]
    # 100 tokens over a cap of 10: floor(count * 10 / 100), at least 1, most frequent first
    assert cap_words({"x": 60, "y": 30, "z": 5, "w": 5}, 10) == ["x"] * 6 + ["y"] * 3 + ["w"]
    assert cap_words({"x": 60, "y": 30, "z": 5, "w": 5}, 10, repeats=False) == ["x", "y", "w", "z"]
    assert cap_words({f"t{i}": 1 for i in range(20)}, 5) == ["t0", "t1", "t10", "t11", "t12"]


@pytest.mark.parametrize("prompt_id,reply,finish,expected", [
    ("default", "Label: Animals.", "stop", ("ok", "Animals")),
    ("default", '"Past-tense verbs"\n\nThese are all verbs.', "stop", ("ok", "Past-tense verbs")),
    ("default", "I'm sorry, but I can't help with that.", "stop", ("refused", None)),
    ("default", "Animals", "content_filter", ("filtered", None)),
    ("default", "   ", "stop", ("unparseable", None)),
    ("default", " ".join(["word"] * 30), "stop", ("unparseable", None)),
    ("lexical", "-ing", "stop", ("ok", "-ing")),
    ("lexical", "NA", "stop", ("none", None)),
    ("pos", "NNS", "stop", ("ok", "NNS")),
    ("pos", "plural nouns", "stop", ("unparseable", None)),
    ("structured", '{"label": "Animals", "description": "Pets.", "type": "semantic"}', "stop", ("ok", "Animals")),
    ("structured", '```json\n{"label": "Verbs", "type": "Syntactic"}\n```', "stop", ("ok", "Verbs")),
    ("structured", '{"label": "Verbs", "type": "grammar"}', "stop", ("unparseable", None)),
    ("structured", "Animals", "stop", ("unparseable", None)),
])
def test_reply_parsing(prompt_id, reply, finish, expected):
    p = get_prompt(prompt_id).parse(reply, finish)
    assert (p.status, p.label) == expected


def test_prompt_messages():
    msgs = PROMPTS["default"].messages(["dog", "dog", "cat"])
    assert msgs[0]["role"] == "system" and "[dog, dog, cat]" in msgs[1]["content"]
    ctx = PROMPTS["context"].messages(["dog"], [(["the", "dog", "barks"], 1)])
    assert "the [[dog]] barks" in ctx[1]["content"]
    with pytest.raises(UserError, match="prompt.id='nope'"):
        get_prompt("nope")


def test_alignment_annotator_on_a_hand_made_concept():
    c = _concept({"dogs": 30, "cats": 1})
    c.alignment = {"xpos": {"best": [["NNS", 0.97], ["NN", 0.03]], "aligned": "NNS"},
                   "upos": {"best": [["NOUN", 1.0]], "aligned": "NOUN"},
                   "casing": {"best": [["lower", 0.5]], "aligned": None}}
    a = AlignmentAnnotator(["xpos", "upos", "casing"]).annotate([c], [])[0]
    assert (a.label, a.status, a.concept_type) == ("XPOS=NNS (97%); UPOS=NOUN (100%)", "ok", "syntactic")
    c.alignment = {"casing": {"best": [["lower", 0.5]], "aligned": None}}
    a = AlignmentAnnotator(["xpos", "casing"]).annotate([c], [])[0]
    assert a.label is None and a.status == "unaligned" and "CASING=lower 50%" in a.description


# ---------------------------------------------------------------- the client against a local server

def _annotator(server, prompt="default", concurrency=4, **kw):
    backend = OpenAIChat("test-model", server.base_url, timeout=kw.pop("timeout", 5.0))
    client = LLMClient(backend, kw.pop("cache", None), concurrency=concurrency, backoff_base=0.01, **kw)
    return LLMAnnotator(client, get_prompt(prompt), progress=False)


def test_refusal_falls_back_to_unique_types_and_filter_is_never_a_label():
    def responder(request, n):
        if "dog, dog" in user_text(request):
            return Reply("I'm sorry, but I can't help with that.")
        return Reply("Animals")

    with LLMServer(responder) as server:
        ann = _annotator(server).annotate([_concept({"dog": 3, "cat": 1})], [])[0]
        assert (ann.status, ann.label, ann.raw) == ("ok", "Animals", "Animals")
        assert len(server.requests) == 2 and "[dog, cat]" in user_text(server.requests[1])
    with LLMServer(lambda r, n: Reply("Animals", "content_filter")) as server:
        ann = _annotator(server).annotate([_concept({"dog": 3, "cat": 1})], [])[0]
        assert ann.status == "filtered" and ann.label is None


def test_retries_honour_retry_after_and_survive_5xx_malformed_and_hangs():
    script = [Status(429, {"Retry-After": "0.3"}), Status(500), Malformed(), Hang(6.0), Reply("Animals")]
    times = []

    def responder(request, n):
        times.append(time.monotonic())
        return script[n] if n < len(script) else Reply("Animals")

    with LLMServer(responder) as server:
        ann = _annotator(server, timeout=2.0).annotate([_concept({"dog": 1})], [])[0]
    assert ann.label == "Animals" and len(times) == 5
    assert times[1] - times[0] >= 0.3  # waited for Retry-After, though the backoff base is 0.01 s
    assert times[4] - times[3] >= 2.0  # the hang ran into the client timeout before the retry


def test_gives_up_after_max_retries_and_records_an_error():
    with LLMServer(lambda r, n: Status(503)) as server:
        a = _annotator(server, max_retries=2)
        ann = a.annotate([_concept({"dog": 1})], [])[0]
        assert ann.status == "error" and ann.label is None and len(server.requests) == 3
        assert a.client.usage.failed == 1 and a.client.usage.retries == 2


def test_concurrency_bound_holds():
    concepts = [_concept({f"w{i}": 1}, i) for i in range(24)]
    with LLMServer(label_responder, latency=0.15) as server:
        anns = _annotator(server, concurrency=4).annotate(concepts, [])
        assert server.max_in_flight == 4
    assert [a.label for a in anns] == [f"words like w{i}" for i in range(24)]


def test_cache_sends_no_request_twice(tmp_path):
    concepts = [_concept({f"w{i}": 2}, i) for i in range(6)]
    with LLMServer(label_responder) as server:
        cache = ReplyCache(tmp_path / "c.sqlite")
        first = _annotator(server, cache=cache).annotate(concepts, [])
        second = _annotator(server, cache=cache).annotate(concepts, [])
        assert len(server.requests) == 6 and first == second
        other = _annotator(server, prompt="structured", cache=cache)
        ann = other.annotate(concepts[:1], [])[0]  # another prompt is another key
        # not JSON, so unparseable, then asked again with unique types: two new requests
        assert ann.status == "unparseable" and len(server.requests) == 8


# ---------------------------------------------------------------- the app

@pytest.fixture
def discovered(tiny_models, text_corpus, tmp_path):
    over = extract_overrides(tiny_models["bert"], text_corpus, tmp_path / "ws", "sampling.min_count=1",
                             "sampling.max_per_type=3", "discovery.k=6")
    return discover_mod.run(compose_cfg("discover", over)), over


def _overrides(discovered, *extra):
    res, over = discovered
    return [*over, f"annotation.concepts={res.path}", *extra]


def test_annotate_alignment_offline_and_dataset_round_trip(discovered):
    res = annotate_mod.run(compose_cfg("annotate", _overrides(discovered)))
    assert sum(res.statuses.values()) == 18 and res.usage == {}
    recs = read_concepts(res.concepts / "layer_01" / "concepts-K6.jsonl")
    assert all(len(c.annotations) == 1 and c.annotations[0].annotator == "alignment" for c in recs)
    every = [c for layer in range(3) for c in read_concepts(res.concepts / f"layer_{layer:02d}" / "concepts-K6.jsonl")]
    assert read_parquet(res.dataset / "concepts-K6.parquet") == every
    lines = (res.dataset / "concepts-K6.jsonl").read_text().splitlines()
    assert [Concept.from_json(json.loads(x)) for x in lines] == every
    _, tcn = read_tcn(res.dataset / "tcn")
    assert [c.members for c in tcn[2]] == [c.members for c in every if c.layer == 2]
    header = (res.dataset / "human-eval.csv").read_text().splitlines()[0]
    assert header.endswith("q1_acceptable,q2_precise,q3_better_than_human")


def test_annotate_openai_end_to_end_keeps_the_key_secret(discovered, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with LLMServer(label_responder) as server:
        over = _overrides(discovered, "annotator=openai", f"annotator.base_url={server.base_url}",
                          "annotator.backoff_base=0.01", "prompt=default")
        res = annotate_mod.run(compose_cfg("annotate", over))
        distinct = len(set(server.prompts()))  # concepts with equal word lists share one request
        assert res.statuses == {"ok": 18} and res.cost_usd > 0
        assert res.usage["requests"] == len(server.requests) == distinct and res.usage["cached"] == 18 - distinct
        assert all(a == f"Bearer {SECRET}" for a in server.auth)
        again = annotate_mod.run(compose_cfg("annotate", over))  # complete: nothing is asked again
        assert len(server.requests) == distinct and again.statuses == res.statuses
        dry = annotate_mod.run(compose_cfg("annotate", [*over, "annotation.dry_run=true", "prompt=pos"]))
        assert len(server.requests) == distinct and dry.usage["estimated_prompt_tokens"] > 0
    recs = read_concepts(res.concepts / "layer_00" / "concepts-K6.jsonl")
    labels = [a.label for c in recs for a in c.annotations if a.annotator == "openai"]
    assert len(labels) == 6 and all(x.startswith("words like") for x in labels)
    assert SECRET not in caplog.text
    ws = Path(discovered[1][[i for i, o in enumerate(discovered[1]) if o.startswith("paths.workspace=")][0]].split("=", 1)[1])
    for f in ws.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_annotate_bad_input(discovered, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="export OPENAI_API_KEY"):
        annotate_mod.run(compose_cfg("annotate", _overrides(discovered, "annotator=openai")))
    with pytest.raises(UserError, match="never the key itself"):
        annotate_mod.run(compose_cfg("annotate", _overrides(discovered, "annotator=openai", f"annotator.api_key_env={SECRET}")))
    with pytest.raises(UserError, match="not a concepts folder"):
        annotate_mod.run(compose_cfg("annotate", [*discovered[1], f"annotation.concepts={tmp_path}"]))
    with pytest.raises(UserError, match="no layer clustered at K=5"):
        annotate_mod.run(compose_cfg("annotate", _overrides(discovered, "discovery.k=5")))


def _cache_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
        except sqlite3.OperationalError:  # the run has created the file but not yet its table
            return 0


def test_killed_run_resumes_without_sending_a_request_twice(discovered, tmp_path):
    cache = tmp_path / "cache.sqlite"
    answered: list[str] = []
    state = {"hang": True}

    def responder(request, n):
        if state["hang"] and len(answered) >= 5:
            return Hang(60)
        answered.append(user_text(request))
        return label_responder(request, n)

    env = {**os.environ, "OPENAI_API_KEY": SECRET, "PYTHONPATH": str(Path(__file__).parent.parent)}
    with LLMServer(responder) as server:
        cmd = [sys.executable, "-m", "concepts.annotate", *_overrides(discovered), "annotator=openai",
               f"annotator.base_url={server.base_url}", f"annotation.cache={cache}", "annotator.concurrency=3"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _cache_rows(cache) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _cache_rows(cache) == 5
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        first = list(answered)
        sent_before = len(server.requests)
        state["hang"] = False
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        second = [user_text(r) for r in server.requests[sent_before:]]
    assert not set(first) & set(second)  # nothing answered before the kill was asked again
    assert len(first) == len(set(first)) and len(second) == len(set(second))  # equal prompts sent once
    res_dir = discovered[0].path
    recs = [c for layer in range(3) for c in read_concepts(res_dir / f"layer_{layer:02d}" / "concepts-K6.jsonl")]
    assert all(any(a.annotator == "openai" and a.status == "ok" for a in c.annotations) for c in recs)
    for f in list(Path(discovered[1][[i for i, o in enumerate(discovered[1]) if o.startswith("paths.workspace=")][0]].split("=", 1)[1]).rglob("*")) + [cache]:
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in done.stderr


# ---------------------------------------------------------------- human evaluation

def test_fleiss_kappa_by_hand():
    # Fleiss (1971) style worked example: 10 items, 14 raters, 5 categories -> kappa = 0.210
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-4)
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)


def test_human_eval_summary(tmp_path, caplog):
    head = "layer,concept_id,size,words,label,human_label,q1_acceptable,q2_precise,q3_better_than_human\n"
    answers = [["yes,yes,no", "yes,no,no"], ["yes,yes,no", "no,no,no"], ["yes,no,no", "yes,no,yes"]]
    paths = []
    for r, rows in enumerate(answers):
        p = tmp_path / f"r{r}.csv"
        p.write_text(head + "".join(f"1,{i},3,\"a, b\",L,H,{a}\n" for i, a in enumerate(rows)))
        paths.append(p)
    rows = {r["question"]: r for r in summarize(paths)}
    assert rows["q1_acceptable"]["majority_yes"] == 1.0
    assert rows["q2_precise"]["pairwise_agreement"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    extra = tmp_path / "r3.csv"  # a fourth rater who rated one more concept than the others
    extra.write_text(head + "".join(f"1,{i},3,\"a, b\",L,H,yes,yes,no\n" for i in range(3)))
    with caplog.at_level(logging.WARNING):
        assert summarize([*paths, extra])[0]["items"] == 2
    assert "1 concept(s) are missing from some sheets" in caplog.text and "r3.csv has 1" in caplog.text
    (tmp_path / "bad.csv").write_text(head + "1,0,3,a,L,H,maybe,yes,no\n")
    with pytest.raises(UserError, match="bad.csv:2: q1_acceptable='maybe'"):
        summarize([paths[0], tmp_path / "bad.csv"])


# ---------------------------------------------------------------- label scoring

def test_label_scoring_perfect_and_pick_all_scorers(discovered, monkeypatch):
    import concepts.annotation.score_stage as score_mod

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    res_dir = discovered[0].path
    by_label: dict[str, set] = {}

    def labeller(request, n):
        words = words_of(request)
        label = f"group {len(by_label)}"
        by_label.setdefault(label, set()).update(words)
        return Reply(label)

    def listed(request):
        text = user_text(request)
        label = text.split('"')[1]
        words = [ln.split(". ", 1)[1] for ln in text.splitlines() if ln[:1].isdigit() and ". " in ln]
        return label, words

    def perfect(request, n):
        label, words = listed(request)
        return Reply(json.dumps([i + 1 for i, w in enumerate(words) if w in by_label[label]]))

    def pick_all(request, n):
        return Reply(json.dumps(list(range(1, len(listed(request)[1]) + 1))))

    with LLMServer(labeller) as server:
        over = _overrides(discovered, "annotator=openai", f"annotator.base_url={server.base_url}",
                          "discovery.layers=[1]", "prompt.fallback_unique=false")
        annotate_mod.run(compose_cfg("annotate", over))
    sc = [*over[:-2], "discovery.layers=[1]", "prompt.fallback_unique=false", "scoring.positives=2",
          "scoring.random_negatives=2", "scoring.near_negatives=2"]
    with LLMServer(perfect) as server:
        good = score_mod.run(compose_cfg("score", [*sc, f"annotator.base_url={server.base_url}"]))
    assert (good.per_concept["status"] == "ok").all() and (good.per_concept["f1"] == 1.0).all()
    with LLMServer(pick_all) as server:
        every = score_mod.run(compose_cfg("score", [*sc, f"annotator.base_url={server.base_url}", "scoring.seed=1"]))
    recs = read_concepts(res_dir / "layer_01" / "concepts-K6.jsonl")
    scores = [a.scores for c in recs for a in c.annotations if a.annotator == "openai"]
    assert len(scores) == 6 and all(s["recall"] == 1.0 for s in scores)
    for s in scores:  # picking every word: precision = positives / words shown
        assert s["precision"] == pytest.approx(s["positives"] / (s["positives"] + s["negatives"]))
        assert s["negatives"] >= 1
    assert every.per_layer["scored"].tolist() == [6]
    with pytest.raises(UserError, match="label scoring needs an LLM"):
        score_mod.run(compose_cfg("score", [*sc, "annotator=alignment"]))


def test_hf_local_backend_runs_a_local_causal_lm(discovered, tiny_models, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    lm_dir = tmp_path / "tiny-lm"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=1024)).save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    over = _overrides(discovered, "annotator=hf_local", f"annotator.model={lm_dir}", "annotator.max_tokens=4",
                      "discovery.layers=[2]", "annotation.max_concepts=2", f"annotation.cache={tmp_path / 'hf.sqlite'}")
    res = annotate_mod.run(compose_cfg("annotate", over))
    assert sum(res.statuses.values()) == 2 and res.usage["requests"] >= 2
    recs = read_concepts(res.concepts / "layer_02" / "concepts-K6.jsonl")
    anns = [a for c in recs for a in c.annotations if a.annotator == "hf_local"]
    assert len(anns) == 2 and all(a.raw is not None and (a.label is None) == (a.status != "ok") for a in anns)
    assert _cache_rows(tmp_path / "hf.sqlite") == res.usage["requests"]
    # the tiny GPT-2 of the fixtures has 64 positions: too short for the prompt, an error per
    # concept; a run in which nothing was answered changes no record
    before = (res.concepts / "layer_02" / "concepts-K6.jsonl").read_bytes()
    with pytest.raises(UserError, match="no request was answered .*exceeds the model's 64 positions"):
        annotate_mod.run(compose_cfg("annotate", [*over, f"annotator.model={tiny_models['gpt2']}"]))
    assert (res.concepts / "layer_02" / "concepts-K6.jsonl").read_bytes() == before


def test_client_side_request_rate_limit():
    concepts = [_concept({f"r{i}": 1}, i) for i in range(7)]
    with LLMServer(label_responder) as server:
        t0 = time.monotonic()
        _annotator(server, concurrency=8, requests_per_minute=240).annotate(concepts, [])  # 4 per second, burst 4
        elapsed = time.monotonic() - t0
        assert len(server.requests) == 7
    assert elapsed >= 0.7  # 4 at once, then 3 more at 0.25 s intervals


def test_client_side_token_rate_limit():
    from concepts.annotation.limits import TokenBucket

    async def take_all():
        bucket = TokenBucket(per_minute=6000)  # 100 tokens per second, burst of 100
        t0 = time.monotonic()
        for _ in range(3):
            await bucket.take(150)  # larger than the burst: waits for a full bucket, then owes the rest
        return time.monotonic() - t0

    import asyncio

    elapsed = asyncio.run(take_all())
    assert 2.4 <= elapsed < 4.0  # 450 tokens at 100/s, the first 150 at once: about 3 s


# ---------------------------------------------------------------- labels that are never wrong and never lost

def _openai(discovered, server_url, tmp_path, *extra):
    return _overrides(discovered, "annotator=openai", f"annotator.base_url={server_url}", "annotator.backoff_base=0.01",
                      "annotator.backoff_max=0.05", f"annotation.cache={tmp_path / 'llm.sqlite'}", *extra)


def _records(res_path: Path) -> bytes:
    return b"".join((res_path / f"layer_{layer:02d}" / "concepts-K6.jsonl").read_bytes() for layer in range(3))


def _cli_annotate(args, cwd, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "WANDB_MODE": "offline",
           **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "concepts.annotate", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_server_going_away_stops_cleanly_and_keeps_what_was_answered(discovered, tmp_path, monkeypatch):
    from llm_server import Drop

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    res_path = discovered[0].path
    with LLMServer(lambda r, n: label_responder(r, n) if n < 5 else Drop()) as server:
        def responder(request, n):
            if n == 5:
                server.go_away()
            return label_responder(request, n) if n < 5 else Drop()
        server.responder = responder
        over = _openai(discovered, server.base_url, tmp_path, "annotator.concurrency=1", "annotator.max_connection_failures=3")
        t0 = time.time()
        with pytest.raises(UserError) as err:
            annotate_mod.run(compose_cfg("annotate", over))
        assert time.time() - t0 < 60
    msg = str(err.value)
    assert server.base_url in msg and "connection failures in a row" in msg and SECRET not in msg
    recs = [c for layer in range(3) for c in read_concepts(res_path / f"layer_{layer:02d}" / "concepts-K6.jsonl")]
    labelled = [a for c in recs for a in c.annotations if a.annotator == "openai" and a.label]
    assert len(labelled) >= 5 and all(a.label.startswith("words like") for a in labelled)  # answered: kept
    assert _cache_rows(tmp_path / "llm.sqlite") == 5
    assert not (res_path / "dataset-K6").exists() and not list((res_path / "annotations").glob("openai-*.json"))
    # a re-run with a changed setting against the dead address: nothing answered, nothing changed,
    # a non-zero exit naming the address (never the key), the labels kept
    before = _records(res_path)
    out = _cli_annotate([*over, "annotator.max_tokens=32"], tmp_path, {"OPENAI_API_KEY": SECRET})
    assert out.returncode == 2 and server.base_url in out.stderr + out.stdout
    assert "Traceback" not in out.stderr and SECRET not in out.stderr + out.stdout
    assert _records(res_path) == before


def test_good_labels_survive_a_failed_or_refused_rerun(discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    res_path = discovered[0].path
    with LLMServer(label_responder) as server:
        over = _openai(discovered, server.base_url, tmp_path)
        annotate_mod.run(compose_cfg("annotate", over))
    good = _records(res_path)
    # same settings, a fresh cache, a server that now refuses everything (in the typographic
    # wording): refusals are answers, but they never replace a usable label
    with LLMServer(lambda r, n: Reply("I\u2019m sorry, but I can\u2019t help with that.")) as server:
        res = annotate_mod.run(compose_cfg("annotate", [*_openai(discovered, server.base_url, tmp_path),
                                                        f"annotation.cache={tmp_path / 'other.sqlite'}"]))
    assert set(res.statuses) == {"refused"}
    assert _records(res_path) == good
    tcn = json.loads((res.dataset / "tcn" / "layer1" / "labels-6.json").read_text())
    assert all(v and v.startswith("words like") for v in tcn.values())


def test_every_export_agrees_on_the_label_of_record(discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    annotate_mod.run(compose_cfg("annotate", _overrides(discovered)))  # the alignment baseline first
    with LLMServer(label_responder) as server:
        over = _openai(discovered, server.base_url, tmp_path)
        for source in (None, "alignment"):
            r = annotate_mod.run(compose_cfg("annotate", [*over, f"annotation.label_source={source or 'null'}"]))
            _check_exports(r, source)


def _check_exports(r, source):
    import pandas as pd

    from concepts.annotation.dataset import label_of_record
    from concepts.discovery.explorer import explorer_data
    from probing.labels import concept_name

    recs = {(c.layer, c.concept_id): c for layer in range(3)
            for c in read_concepts(r.concepts / f"layer_{layer:02d}" / "concepts-K6.jsonl")}
    want = {key: (a.label if (a := label_of_record(c, source)) else None) for key, c in recs.items()}
    if source is None:
        assert all(v is None or v.startswith("words like") for v in want.values())  # the LLM's, not alignment's
        assert sum(v is not None for v in want.values()) == 18
    else:
        assert all(v is None or "=" in v for v in want.values())  # aligned tags: "XPOS=NN (100%)"
    parquet = pd.read_parquet(r.dataset / "concepts-K6.parquet")
    assert {(int(x.layer), int(x.concept_id)): (x.label if isinstance(x.label, str) else None)
            for x in parquet.itertuples()} == want
    assert set(parquet["annotator"].dropna()) == ({"openai"} if source is None else {"alignment"})
    jsonl = [json.loads(x) for x in (r.dataset / "concepts-K6.jsonl").read_text().splitlines()]
    assert {(d["layer"], d["concept_id"]): d["label"] for d in jsonl} == want
    for layer in range(3):
        tcn = json.loads((r.dataset / "tcn" / f"layer{layer}" / "labels-6.json").read_text())
        assert {(layer, int(cid)): v for cid, v in tcn.items()} == {k: v for k, v in want.items() if k[0] == layer}
    sheet = pd.read_csv(r.dataset / "human-eval.csv")
    assert all(want[(int(x.layer), int(x.concept_id))] == x.label for x in sheet.itertuples())
    explorer = explorer_data({layer: [c for k, c in recs.items() if k[0] == layer] for layer in range(3)}, [], "t",
                             label_source=source)
    for layer in explorer["layers"]:
        for c in layer["concepts"]:
            label = want[(layer["layer"], c["id"])]
            assert c["label"] == label and (label is None or c["labels"][0] == label)
    assert all(concept_name(c, source) == (f"C{c.concept_id}: {want[k]}" if want[k] else f"C{c.concept_id}")
               for k, c in recs.items())


@pytest.mark.parametrize("value", [SECRET, "AbCdEf1234567890GhIjKlMnOp", "sk_live.42-x"])
def test_a_key_passed_as_the_variable_name_is_refused_before_hydra_writes_it(discovered, tmp_path, value):
    out = _cli_annotate([*_overrides(discovered, "annotator=openai", f"annotator.api_key_env={value}")], tmp_path)
    assert out.returncode == 2 and "NAME of an environment variable" in out.stderr + out.stdout
    assert value not in out.stderr + out.stdout
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert value.encode() not in f.read_bytes(), f


def test_cost_counts_the_cached_replies_a_run_reuses(discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with LLMServer(label_responder) as server:
        over = _openai(discovered, server.base_url, tmp_path, "annotator.price_input_per_1m=1",
                       "annotator.price_output_per_1m=2", "annotation.export=false")
        first = annotate_mod.run(compose_cfg("annotate", over))
        n = len(server.requests)
        # another concepts selection re-asks nothing: every reply comes from the cache
        again = annotate_mod.run(compose_cfg("annotate", [*over, "annotation.export=true"]))
        assert len(server.requests) == n
    rep = json.loads(next((again.concepts / "annotations").glob("openai-*.json")).read_text())
    assert again.cost_usd == 0 and rep["cost_cached_usd"] == pytest.approx(first.cost_usd)
    assert rep["cost_total_usd"] == pytest.approx(first.cost_usd) and first.cost_usd > 0


@pytest.mark.parametrize("supports_json", [True, False])
def test_structured_prompt_uses_json_mode_where_the_server_takes_it(supports_json, discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    def responder(request, n):
        if "response_format" in request and not supports_json:
            return Status(400, body='{"error": {"message": "response_format is not supported", "type": "invalid_request_error"}}')
        return Reply(json.dumps({"label": f"words like {words_of(request)[0]}", "type": "lexical"}))

    with LLMServer(responder) as server:
        res = annotate_mod.run(compose_cfg("annotate", _openai(discovered, server.base_url, tmp_path, "prompt=structured",
                                                               "annotator.concurrency=1")))
    assert res.statuses == {"ok": 18}
    sent = ["response_format" in r for r in server.requests]
    if supports_json:
        assert all(sent) and server.requests[0]["response_format"] == {"type": "json_object"}
    else:  # refused once, then asked without it
        assert sent[0] and not any(sent[1:]) and res.usage["failed"] == 0


def test_cached_refusals_are_asked_again_only_with_retry_refused(discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    over = _overrides(discovered, "annotator=openai", "annotator.backoff_base=0.01", "annotation.export=false",
                      f"annotation.cache={tmp_path / 'c.sqlite'}", "prompt.fallback_unique=false")
    # one server throughout: the cache keys replies by server, so another server would be asked again
    with LLMServer(lambda r, n: Reply("I\u2019m sorry, I can\u2019t help with that.")) as server:
        over = [*over, f"annotator.base_url={server.base_url}"]
        first = annotate_mod.run(compose_cfg("annotate", over))
        assert set(first.statuses) == {"refused"}
        n = len(server.requests)
        server.responder = label_responder
        same = annotate_mod.run(compose_cfg("annotate", [*over, "annotation.export=true"]))  # any change: re-run, cache only
        assert set(same.statuses) == {"refused"} and len(server.requests) == n
        again = annotate_mod.run(compose_cfg("annotate", [*over, "annotation.retry_refused=true"]))
        assert again.statuses == {"ok": 18} and len(server.requests) > n


def test_an_exhausted_quota_stops_the_run_at_once(discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    body = '{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}'
    with LLMServer(lambda r, n: Status(429, body=body)) as server:
        with pytest.raises(UserError, match="insufficient_quota") as err:
            annotate_mod.run(compose_cfg("annotate", _openai(discovered, server.base_url, tmp_path, "annotator.concurrency=1")))
        assert len(server.requests) == 1 and server.base_url in str(err.value)


def test_a_second_k_keeps_the_first(discovered):
    res, over = discovered
    other = discover_mod.run(compose_cfg("discover", [*over, "discovery.k=4"]))
    assert other.path == res.path
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["layers_done"] == {"4": [0, 1, 2], "6": [0, 1, 2]}
    again = annotate_mod.run(compose_cfg("annotate", [*over, f"annotation.concepts={res.path}"]))  # K=6 still there
    assert again.k == 6 and sum(again.statuses.values()) == 18


def test_a_costly_annotation_asks_first_and_says_what_it_will_send(discovered, tmp_path, monkeypatch, caplog):
    """Above annotation.confirm_above_usd the run stops before any request (no terminal here) or asks
    at a terminal; the estimate is logged either way."""
    import concepts.core.confirm as confirm_mod

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with LLMServer(label_responder) as server:
        over = _openai(discovered, server.base_url, tmp_path)
        before = _records(discovered[0].path)
        with caplog.at_level("INFO"), pytest.raises(UserError, match=r"an LLM annotation: 18 concepts, at most \d+ distinct requests.*above "
                                                                     r"annotation.confirm_above_usd=1e-09"):
            annotate_mod.run(compose_cfg("annotate", [*over, "annotation.confirm_above_usd=0.000000001"]))
        assert not server.requests and _records(discovered[0].path) == before
        assert "an LLM annotation: 18 concepts, at most " in caplog.text
        monkeypatch.setattr(confirm_mod.sys, "stdin", type("Tty", (), {"isatty": lambda self: True})())
        monkeypatch.setattr("builtins.input", lambda prompt: "n")
        with pytest.raises(UserError, match="not confirmed"):
            annotate_mod.run(compose_cfg("annotate", [*over, "annotation.confirm_above_usd=0.000000001"]))
        assert not server.requests
        monkeypatch.setattr("builtins.input", lambda prompt: "y")
        res = annotate_mod.run(compose_cfg("annotate", [*over, "annotation.confirm_above_usd=0.000000001"]))
        assert res.statuses == {"ok": 18} and len(server.requests) == 6


# ---------------------------------------------------------------- non-labels, kept labels, the label of record

@pytest.mark.parametrize("reply", ["I can't help with that.", "No clear pattern", "I'd rather not label this list."])
def test_a_storm_of_non_labels_stops_the_run_and_changes_nothing(reply, discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    res_path = discovered[0].path
    before = _records(res_path)
    with LLMServer(lambda r, n: Reply(reply)) as server:
        over = _openai(discovered, server.base_url, tmp_path, "annotation.judge_after=8", "annotator.concurrency=2")
        with pytest.raises(UserError, match=r"not labels .*annotation.max_non_labels=0.5.*no record was changed"):
            annotate_mod.run(compose_cfg("annotate", over))
        # judged after 8 replies: the run stopped well before asking every concept (18, twice each)
        assert len(server.requests) < 18
    assert _records(res_path) == before
    assert not (res_path / "dataset-K6").exists() and not list((res_path / "annotations").glob("openai-*.json"))


def test_a_storm_stops_a_cli_run_with_one_line(discovered, tmp_path):
    with LLMServer(lambda r, n: Reply("Sorry \u2014 I can\u2019t help with that.")) as server:
        out = _cli_annotate([*_openai(discovered, server.base_url, tmp_path, "annotation.judge_after=5")], tmp_path,
                            {"OPENAI_API_KEY": SECRET})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "are not labels (refused" in out.stderr + out.stdout


def test_na_answers_to_the_lexical_prompt_are_no_storm(discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with LLMServer(lambda r, n: Reply("NA")) as server:
        res = annotate_mod.run(compose_cfg("annotate", _openai(discovered, server.base_url, tmp_path, "prompt=lexical",
                                                               "annotation.judge_after=5")))
    assert res.statuses == {"none": 18}


def test_a_rerun_keeps_labels_unless_overwrite(discovered, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    res_path = discovered[0].path
    with LLMServer(label_responder) as server:
        annotate_mod.run(compose_cfg("annotate", _openai(discovered, server.base_url, tmp_path)))
    good = _records(res_path)
    other = _openai(discovered, "BASE", tmp_path, f"annotation.cache={tmp_path / 'other.sqlite'}")
    with LLMServer(lambda r, n: Reply("Animals")) as server:
        over = [o.replace("BASE", server.base_url) for o in other]
        with caplog.at_level("WARNING"):
            res = annotate_mod.run(compose_cfg("annotate", over))
        assert res.statuses == {"ok": 18} and _records(res_path) == good
        assert "kept 18 existing labels" in caplog.text
        rep = json.loads(next((res_path / "annotations").glob("openai-*.json")).read_text())
        assert rep["labels_kept"] == 18 and rep["records_changed"] == 0
        annotate_mod.run(compose_cfg("annotate", [*over, "annotation.overwrite=true"]))
    recs = [c for layer in range(3) for c in read_concepts(res_path / f"layer_{layer:02d}" / "concepts-K6.jsonl")]
    assert {a.label for c in recs for a in c.annotations if a.annotator == "openai"} == {"Animals"}


def test_a_parser_fix_rereads_stored_replies_from_the_cache(discovered, tmp_path, monkeypatch):
    """A label the old parser got wrong is replaced when the same cached reply is read again."""
    import concepts.annotation.stage as am

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    res_path = discovered[0].path
    with LLMServer(lambda r, n: Reply(f"### Label\nWords like {words_of(r)[0]}")) as server:
        over = _openai(discovered, server.base_url, tmp_path)
        annotate_mod.run(compose_cfg("annotate", over))
        n = len(server.requests)
        for layer in range(3):  # what the old parser stored: the header word
            path = res_path / f"layer_{layer:02d}" / "concepts-K6.jsonl"
            recs = read_concepts(path)
            for c in recs:
                for a in c.annotations:
                    if a.annotator == "openai":
                        a.label = "Label"
            from concepts.discovery.records import write_concepts
            write_concepts(path, recs)
        monkeypatch.setattr(am, "PARSER_VERSION", 999)
        annotate_mod.run(compose_cfg("annotate", over))
        assert len(server.requests) == n  # from the cache
    labels = {a.label for layer in range(3) for c in read_concepts(res_path / f"layer_{layer:02d}" / "concepts-K6.jsonl")
              for a in c.annotations if a.annotator == "openai"}
    assert labels and all(x.startswith("Words like") for x in labels)


def test_a_label_source_that_matches_nothing_is_refused_naming_the_sources(discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with LLMServer(label_responder) as server:
        over = _openai(discovered, server.base_url, tmp_path)
        first = annotate_mod.run(compose_cfg("annotate", over))
        exported = {p.name: p.read_bytes() for p in first.dataset.rglob("*") if p.is_file()}
        for typo in ("OpenAI", "openai:gpt-4o"):
            with pytest.raises(UserError, match=rf"label_source='{typo}' matches no label.*openai:gpt-4o-mini:default "
                                                r"\(18 concepts\)"):
                annotate_mod.run(compose_cfg("annotate", [*over, f"annotation.label_source={typo}"]))
    assert {p.name: p.read_bytes() for p in first.dataset.rglob("*") if p.is_file()} == exported


def _explorer_labels(page: Path) -> set[str]:
    """What the labels of record shown on an explorer page look like ("words like" from the LLM,
    "TAG=" from the alignment annotator, as in "CASING=lower (90%)")."""
    import re

    shown = re.findall(r'"label": (null|"[^"]*")', page.read_text())
    return {"words like" if "words like" in x else "TAG=" if "=" in x else "other" for x in shown if x != "null"}


def test_every_explorer_writer_shows_the_label_of_record(discovered, tmp_path, monkeypatch):
    import concepts.annotation.score_stage as score_mod

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    res, over0 = discovered
    annotate_mod.run(compose_cfg("annotate", _overrides(discovered)))  # the alignment baseline
    page = res.path / "explorer-K6.html"
    with LLMServer(label_responder) as server:
        annotate_mod.run(compose_cfg("annotate", _openai(discovered, server.base_url, tmp_path,
                                                         "annotation.label_source=alignment")))
    assert _explorer_labels(page) == {"TAG="}
    # scoring rewrites the page: still the label of record the annotation chose
    with LLMServer(lambda r, n: Reply('{"fit": []}')) as server:
        score_mod.run(compose_cfg("score", [*_openai(discovered, server.base_url, tmp_path), "scoring.positives=1",
                                            "scoring.random_negatives=1", "scoring.near_negatives=0"]))
    assert _explorer_labels(page) == {"TAG="}
    page.unlink()  # discovery rewrites the folder's views
    discover_mod.run(compose_cfg("discover", over0))
    assert _explorer_labels(page) == {"TAG="}
    with LLMServer(label_responder) as server:  # the LLM label of record again
        annotate_mod.run(compose_cfg("annotate", _openai(discovered, server.base_url, tmp_path)))
    page.unlink()
    discover_mod.run(compose_cfg("discover", over0))
    assert "words like" in _explorer_labels(page)


def test_the_cost_estimate_counts_the_fallback_reasks(discovered, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    recs = [c for layer in range(3) for c in read_concepts(discovered[0].path / f"layer_{layer:02d}" / "concepts-K6.jsonl")]
    token_lists = {tuple(cap_words(c.type_counts, 100)) for c in recs}
    unique_lists = {tuple(cap_words(c.type_counts, 100, repeats=False)) for c in recs}
    expected = len(token_lists | unique_lists)
    with caplog.at_level("INFO"):
        annotate_mod.run(compose_cfg("annotate", _overrides(discovered, "annotator=openai", "annotation.dry_run=true")))
    assert f"dry run: at most {expected} requests" in caplog.text and expected > len(token_lists)
