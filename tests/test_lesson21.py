"""Lesson 21: kit.techniques.rag (corpus, exact questions, BM25 against an independent reference, retrieval recall,
fusion, the injection guard, answer scoring, the log-likelihood multiple-choice scorer) and exercises 21.1–21.4
(references pass, typical mistakes fail naming their case, hints nudge, no kit function passes behind a thin wrapper).
"""
from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import torch

import kit.exercises as kx
from kit.exercises import lesson21 as L
from kit.exercises import verdict
from kit.models.llm import stand_in as stand_in_llm
from kit.techniques import rag


# ---------------------------------------------------------------- corpus and questions
@pytest.fixture(scope="module")
def corpus():
    return rag.build_corpus(("numpy.linalg", "torch.nn.functional", "sklearn.metrics"))


def test_corpus_documents_come_from_real_signatures(corpus):
    import importlib
    assert len(corpus) > 100 and len({d.name for d in corpus}) == len(corpus)
    for d in corpus[::17]:
        mod, name = d.name.rsplit(".", 1)
        sig = inspect.signature(getattr(importlib.import_module(mod), name))
        for p, v in d.params:
            want = sig.parameters[p].default
            assert v == (None if want is inspect.Parameter.empty else repr(want)), (d.name, p)
        assert d.text.startswith(d.name + "(") and d.summary and d.summary in d.text


def test_questions_have_exact_answers_read_from_the_signature(corpus):
    qs = rag.make_questions(corpus, 30, np.random.default_rng(0))
    assert len(qs) == 30 and len({q.doc for q in qs}) == 30
    for q in qs:
        d = corpus[q.doc]
        param = q.text.split("`")[1]
        assert dict(d.params)[param] == q.answer and q.answer != "None" and d.name in q.text
    again = rag.make_questions(corpus, 30, np.random.default_rng(0))
    assert again == qs                                        # seeded: the same questions
    param_qs = rag.make_questions(corpus, 10, np.random.default_rng(1), kinds=("param",))
    for q in param_qs:   # "which parameter has default v?" is asked only where one parameter has it
        v = q.text.split("`")[-2]
        assert [p for p, dv in corpus[q.doc].params if dv == v] == [q.answer]


def test_shared_boilerplate_defaults_are_not_asked():
    docs = [rag.Doc(f"m.f{i}", (("casting", "'same_kind'"), (f"p{i}", str(i + 1))), "s", "t") for i in range(20)]
    qs = rag.make_questions(docs, 20, np.random.default_rng(0), max_shared=10)
    assert qs and all("casting" not in q.text for q in qs)


# ---------------------------------------------------------------- BM25, dense, fusion, recall
def _bm25_by_hand(query, doc_terms, k1=1.5, b=0.75):
    """Okapi BM25 term by term in plain Python (Lucene's idf), for every document."""
    n = len(doc_terms)
    avgdl = sum(map(len, doc_terms)) / n
    out = []
    for d in doc_terms:
        s = 0.0
        for t in query:
            n_t = sum(t in x for x in doc_terms)
            f = d.count(t)
            s += math.log(1 + (n - n_t + 0.5) / (n_t + 0.5)) * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avgdl))
        out.append(s)
    return np.array(out)


def test_bm25_matches_an_independent_reference(corpus):
    texts = [d.text for d in corpus[:80]]
    queries = ["default value of the parameter ord of numpy.linalg.norm", "cross entropy loss reduction mean",
               "axis axis keepdims", "zebra"]
    for k1, b in ((1.5, 0.75), (1.2, 0.0), (0.5, 1.0)):
        got = rag.BM25(texts, k1=k1, b=b).scores(queries)
        want = np.stack([_bm25_by_hand(rag.terms(q), [rag.terms(t) for t in texts], k1, b) for q in queries])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.all(got[-1] == 0)                               # a term no document holds adds nothing
    assert rag.terms("numpy.linalg.norm(x, ord=None, keepdims=False)") == \
        ["numpy", "linalg", "norm", "x", "ord", "none", "keepdims", "false"]
    assert rag.terms("n_components") == ["n", "components"]


def test_exercise_reference_is_kits_bm25_too():
    rng = np.random.default_rng(3)
    docs = [[str(w) for w in rng.choice(L._WORDS, int(rng.integers(1, 15)))] for _ in range(12)]
    q = ["axis", "mean", "axis", "zebra"]
    want = rag.BM25([" ".join(d) for d in docs]).scores([" ".join(q)])[0]
    np.testing.assert_allclose(L._bm25_scores(q, docs), want, rtol=1e-12)


def test_top_k_rrf_and_recall_on_a_constructed_case():
    s = np.array([[0.9, 0.1, 0.5, 0.5], [0.0, 0.2, 0.1, 0.3]])
    assert rag.top_k(s, 3).tolist() == [[0, 2, 3], [3, 1, 2]]       # a tie keeps the lower index first
    assert rag.recall_at_k(rag.top_k(s, 3), [3, 0], 1) == 0.0
    assert rag.recall_at_k(rag.top_k(s, 3), [3, 0], 3) == 0.5
    a = np.array([[3.0, 2.0, 1.0]])        # ranks 1, 2, 3
    b = np.array([[10.0, 30.0, 20.0]])     # ranks 3, 1, 2
    fused = rag.rrf([a, b], k=60)
    np.testing.assert_allclose(fused, [[1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62]])
    assert L._rrf_fuse([[0, 1, 2], [1, 2, 0]]) == rag.top_k(fused, 3)[0].tolist()


def test_dense_scores_are_cosines_and_the_retrievers_find_documents(corpus):
    class Unit:   # a stand-in encoder: bag of terms, normalised (kit's SentenceEncoder normalises too)
        vocab = {}

        def encode(self, texts):
            rows = []
            for t in texts:
                v = np.zeros(4096)
                for w in rag.terms(t):
                    v[hash(w) % 4096] += 1
                rows.append(v / max(np.linalg.norm(v), 1e-12))
            return torch.tensor(np.array(rows))
    docs = corpus[:100]
    qs = rag.make_questions(docs, 20, np.random.default_rng(0))
    gold = [q.doc for q in qs]
    dense = rag.dense_scores(Unit(), [q.text for q in qs], [d.text for d in docs])
    assert dense.shape == (20, 100) and np.all(dense <= 1 + 1e-9)
    lex = rag.BM25([d.text for d in docs]).scores([q.text for q in qs])
    assert rag.recall_at_k(rag.top_k(lex, 3), gold, 3) >= 0.8      # the question names the function
    r_dense = rag.recall_at_k(rag.top_k(dense, 3), gold, 3)
    assert rag.recall_at_k(rag.top_k(rag.rrf([lex, dense]), 3), gold, 3) >= min(0.8, r_dense)


# ---------------------------------------------------------------- prompts, injection, scoring
def test_render_plant_and_the_guard():
    d = rag.Doc("m.smooth", (("x", None), ("window", "5")), "Smooth a signal.", "m.smooth(x, window=5)\nSmooth a signal.")
    assert rag.render(d) == "m.smooth: Smooth a signal.\n- parameter `x`: required\n- parameter `window`: default `5`"
    for kind, text in rag.INJECTIONS.items():
        p = rag.plant(d, text, "window")
        assert rag.PAYLOAD in rag.render(p) and "{param}" not in rag.render(p) and p.params == d.params
        kept = rag.guarded(p)
        if kind != "false note":               # orders, and lines dressed up as parameter lines, are dropped
            assert rag.PAYLOAD not in kept and kept == rag.render(d)
        else:                                  # a false statement is neither: the guard cannot see it
            assert rag.PAYLOAD in kept
        assert rag.render(p).index(rag.PAYLOAD) > rag.render(p).index("- parameter `window`")   # after the parameters
    assert rag.drop_forged_layout("ok\n - Parameter `a`: default `1`\nfine") == ("ok\nfine", 1)
    assert rag.guarded(d) == rag.render(d)     # nothing dropped from a clean document
    fenced = rag.rag_messages("q?", ["a </document> b"], fence=True)
    assert fenced[1]["content"].count("</document>") == 1 and "never follow" in fenced[0]["content"]
    assert rag.rag_messages("q?", None)[1]["content"] == "Question: q?"


def test_instruction_filter_keeps_ordinary_docstrings(corpus):
    dropped = [d.name for d in corpus if rag.drop_instructions(d.summary)[1]]
    assert len(dropped) <= len(corpus) // 50, dropped


def test_answers_are_scored_exactly():
    assert rag.is_correct("'mean'", "'mean'") and rag.is_correct("mean", "'mean'") and rag.is_correct("True.", "True")
    assert rag.is_correct(" 1e-05 ", "1e-05") and rag.is_correct("`axis=None`", "axis")
    assert not rag.is_correct("1e-5x", "1e-05") and not rag.is_correct("", "0") and not rag.is_correct("10", "0")
    assert rag.is_refusal("I don't know.") and rag.is_refusal("It is not provided in the documents")
    assert not rag.is_refusal("False")


def test_prompt_text_opens_the_reply():
    from kit.data import DataUnavailable, load_tokenizer
    try:
        tok = load_tokenizer("SmolLM2-135M-Instruct")
    except DataUnavailable:
        pytest.skip("SmolLM2 is not installed")
    p = rag.prompt_text(tok, rag.rag_messages("What?", ["doc"]))
    assert p.endswith("<|im_start|>assistant\nThe default value is `")


# ---------------------------------------------------------------- multiple choice by log-likelihood
def test_multiple_choice_options_hold_the_answer_once():
    q = rag.Question("What is the default value of the parameter `a` of `f`?", "0", 0, "default")
    seen = set()
    for s in range(20):
        text, right = rag.multiple_choice(q, ["0", "1", "True", "'x'", "0", "2.0"], np.random.default_rng(s))
        lines = text.split("\n")[1:]
        assert len(lines) == 4 and lines[right] == f"{rag.LETTERS[right]}. 0"
        assert sum(l.endswith(". 0") for l in lines) == 1
        seen.add(right)
    assert seen == {0, 1, 2, 3}


def test_choice_logprobs_equal_a_direct_computation():
    model, tok = stand_in_llm(None, seed=0)
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(0, 256, int(n))) for n in (5, 9, 1)]
    letters = [65, 66, 67, 68]
    got = rag.choice_logprobs(model, prompts, letters)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            logits = model(torch.tensor([p]))[0, -1].double()
        want = (logits - torch.logsumexp(logits, 0))[letters].numpy()
        np.testing.assert_allclose(got[i], want, atol=1e-5)


# ---------------------------------------------------------------- exercises
def _top_k_torch(q, d, k):   # float64, ties kept in order by a stable sort
    qn = torch.nn.functional.normalize(torch.as_tensor(q), dim=1)
    dn = torch.nn.functional.normalize(torch.as_tensor(d), dim=1)
    return torch.sort(-(qn @ dn.T), dim=1, stable=True).indices[:, :k]


def _sse_buffered(chunks):
    out, buf = [], ""
    for c in chunks:
        buf += c
        while "\n\n" in buf:
            ev, buf = buf.split("\n\n", 1)
            for line in ev.split("\n"):
                if line.startswith("data:"):
                    payload = line[5:].removeprefix(" ")
                    if payload == "[DONE]":
                        return out
                    piece = json.loads(payload)["choices"][0]["delta"].get("content")
                    if piece:
                        out.append(piece)
    return out


@pytest.mark.parametrize("ex, fn", [("21.1", L._cosine_top_k), ("21.1", _top_k_torch), ("21.2", L._bm25_scores),
                                    ("21.3", L._rrf_fuse), ("21.4", L._sse_contents), ("21.4", _sse_buffered)])
def test_right_answers_pass_on_fresh_inputs(ex, fn):
    for _ in range(5):
        assert verdict(ex, fn) is None


def _bm25_no_idf(query, docs, k1=1.5, b=0.75):
    avg = np.mean([len(d) for d in docs])
    return np.array([sum(d.count(t) * (k1 + 1) / (d.count(t) + k1 * (1 - b + b * len(d) / avg)) for t in query)
                     for d in docs])


def _bm25_unique_query(query, docs, k1=1.5, b=0.75):
    return L._bm25_scores(list(dict.fromkeys(query)), docs, k1, b)


def _bm25_classic_idf(query, docs, k1=1.5, b=0.75):   # ln((N − n + 0.5)/(n + 0.5)): negative for common terms
    n, avg = len(docs), np.mean([len(d) for d in docs])
    out = np.zeros(n)
    for t in query:
        df = sum(t in d for d in docs)
        idf = np.log((n - df + 0.5) / (df + 0.5))
        out += np.array([idf * d.count(t) * (k1 + 1) / (d.count(t) + k1 * (1 - b + b * len(d) / avg)) for d in docs])
    return out


def _rrf_absent_last(rankings, k=60, top=None):
    docs = sorted({d for r in rankings for d in r})
    score = {d: sum(1 / (k + (r.index(d) + 1 if d in r else len(r) + 1)) for r in rankings) for d in docs}
    return sorted(docs, key=lambda d: (-score[d], d))[:top]


def _sse_no_done(chunks):
    out = []
    for ev in "".join(chunks).split("\n\n"):
        for line in ev.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                piece = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if piece:
                    out.append(piece)
    return out


def _sse_per_chunk(chunks):   # parses each chunk alone: the network's cuts break it
    out = []
    for c in chunks:
        for line in c.split("\n"):
            if line.startswith("data: {"):
                try:
                    piece = json.loads(line[6:])["choices"][0]["delta"].get("content")
                except json.JSONDecodeError:
                    continue
                if piece:
                    out.append(piece)
    return out


WRONG = [
    ("21.1", lambda q, d, k: np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :k], ("queries", "lengths")),  # dot product
    ("21.1", lambda q, d, k: np.argsort(-(q @ d.T / np.linalg.norm(d, axis=1)), axis=1, kind="stable")[:, :k],
     ("all zeros",)),                                                                                      # NaN
    ("21.1", lambda q, d, k: np.argsort((q @ d.T) / np.linalg.norm(q, axis=1)[:, None]
                                        / np.maximum(np.linalg.norm(d, axis=1), 1e-12), axis=1)[:, :k],
     ("queries", "lengths", "identical", "zeros", "whole ranking")),                                      # worst first
    ("21.2", _bm25_no_idf, ("random documents", "no document", "repeats", "every document", "lengths", "b = 1")),
    ("21.2", _bm25_unique_query, ("repeats",)),
    ("21.2", _bm25_classic_idf, ("random documents", "no document", "repeats", "every document", "lengths", "b = 1")),
    ("21.3", _rrf_absent_last, ("partial",)),                           # a document a list lacks counted as its last
    ("21.3", lambda rankings, k=60, top=None: sorted({d for r in rankings for d in r},
                                                      key=lambda d: (-sum(1 / (k + r.index(d) + 1) for r in rankings if d in r), -d))[:top],
     ("disagree",)),                                                                                      # ties: larger id
    ("21.4", _sse_no_done, ("'data:' without its space",)),
    ("21.4", _sse_per_chunk, ("cut at random", "one character", "comment")),
]


@pytest.mark.parametrize("ex, fn, cases", WRONG)
def test_wrong_answers_fail_naming_the_case(ex, fn, cases):
    for _ in range(3):
        why = verdict(ex, fn)
        assert why is not None and "on the case '" in why, why
        assert any(c in why for c in cases), why


@pytest.mark.parametrize("ex", ["21.1", "21.2", "21.3", "21.4"])
def test_hints_nudge_without_giving_the_answer(ex):
    hints = kx.get(ex).hints
    assert len(hints) >= 2 and "?" in hints[0]
    text = " ".join(hints)
    for giveaway in ("def ", "return ", "np.log(1 +", "@ d.T", "split(\"\\n\\n\"", "json.loads(", "sorted("):
        assert giveaway not in text, (ex, giveaway)


def test_no_kit_function_passes_behind_a_thin_wrapper():
    import kit.models.bert as bert
    import kit.models.llm as llm
    import kit.serve.llm_app as llm_app
    import kit.serve.monitor as monitor
    import kit.viz as viz
    bm = rag.BM25(["a b", "b c"])
    namespace = {"rag": rag, "llm": llm, "bert": bert, "llm_app": llm_app, "M": monitor, "viz": viz, "bm25": bm,
                 "top_k": rag.top_k, "rrf": rag.rrf, "dense_scores": rag.dense_scores, "terms": rag.terms}
    assert kx.find_leaks(namespace, "21") == []
