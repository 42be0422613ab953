"""Lesson 15 exercises: byte-pair encoding by hand, bits per byte, and reading a GPT-2 checkpoint."""
from __future__ import annotations

import math

import numpy as np
import torch

from kit.exercises import Case, compare, function


# ------------------------------------------------------------------------------------- references (private)
def _bits_per_byte(loss, n_tokens, n_bytes):
    return loss * n_tokens / n_bytes / math.log(2)


def _most_frequent_pair(ids):
    counts: dict[tuple[int, int], int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1  # dicts keep first-occurrence order: ties go to the earliest pair
    if not counts:
        return None
    best = max(counts.values())
    return next(p for p, c in counts.items() if c == best)


def _merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _train(ids, n_merges, first_id):
    ids, merges = list(ids), {}
    for k in range(n_merges):
        pair = _most_frequent_pair(ids)
        if pair is None:
            break
        merges[pair] = first_id + k
        ids = _merge(ids, pair, first_id + k)
    return merges, ids


from kit.models.gpt2_format import CONV1D_WEIGHTS as _CONV1D  # Hugging Face Conv1D layers store (in, out)


def _hf_to_kit(name, tensor):
    name = name.removeprefix("transformer.")
    if name.startswith("lm_head.") or name.endswith((".attn.bias", ".attn.masked_bias")):
        return None
    if name.startswith("h."):
        name = "blocks." + name[2:]
    return name, (tensor.t() if name.endswith(_CONV1D) else tensor)


# ------------------------------------------------------------------------------------- comparing id lists
def _as_list(x):
    if hasattr(x, "tolist"):
        x = x.tolist()
    return list(x) if isinstance(x, (list, tuple)) else None


def _same_ids(got, want):
    g = _as_list(got)
    if g is None:
        return f"your result should be a list of ids, got {type(got).__name__}"
    if len(g) != len(want):
        return f"your result has {len(g)} ids where {len(want)} were expected"
    for i, (a, b) in enumerate(zip(g, want)):
        if a != b:
            return f"your result differs first at position {i}"
    return None


def _same_pair(got, want):
    if want is None:
        return None if got is None else f"your result is {got!r}, but a list this short has no pair: return None"
    if got is None:
        return "your result is None, but the list has pairs"
    g = _as_list(got)
    if g is None or len(g) != 2:
        return f"your result should be a pair (a, b), got {got!r}"
    if tuple(g) != tuple(want):
        return f"your result is the pair {tuple(g)}, which is not the most frequent one (or loses the tie rule)"
    return None


def _same_training(got, want):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "your result should be two values: (merges, ids)"
    merges, ids = got
    if not isinstance(merges, dict):
        return f"your merges should be a dict {{pair: new_id}}, got {type(merges).__name__}"
    w_merges, w_ids = want
    bad = next((p for p in merges if not (isinstance(p, tuple) and len(p) == 2)), "ok")
    if bad != "ok":
        return f"your merges hold the key {bad!r}, which is not a pair (a, b)"
    got_items = [(tuple(p), i) for p, i in merges.items()]
    want_items = list(w_merges.items())
    if len(got_items) != len(want_items):
        return f"your function learned {len(got_items)} merges where {len(want_items)} were expected"
    for k, (g, w) in enumerate(zip(got_items, want_items)):
        if g != w:
            return f"your merges have a different merge number {k + 1} (in learning order)"
    msg = _same_ids(ids, w_ids)
    return f"(final ids) {msg}" if msg else None


def _same_entry(got, want):
    if want is None:
        return None if got is None else "your result should be None: this tensor is not one of kit's parameters"
    if got is None:
        return "your result is None, but this tensor is one of kit's parameters"
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "your result should be (kit_name, tensor)"
    if got[0] != want[0]:
        return f"your result names the tensor {got[0]!r}: not kit's name for it"
    return compare(got[1], want[1], 0.0, 0.0, "the tensor")


# ------------------------------------------------------------------------------------- 15.1 bits per byte
def _bpb_cases(rng):
    n_bytes = int(rng.integers(1_000, 1_000_000))
    n_tokens = int(n_bytes * rng.uniform(0.25, 1.0))
    yield Case(f"loss {n_tokens:,} tokens over {n_bytes:,} bytes", (float(rng.uniform(0.5, 6)), n_tokens, n_bytes))
    yield Case("bytes only: one token per byte", (float(rng.uniform(1, 3)), 5000, 5000))
    yield Case("a perfect model: loss 0", (0.0, 300, 1000))
    yield Case("a curve of losses (a NumPy array)", (rng.uniform(1, 5, size=int(rng.integers(3, 9))), 4000, 9000))


function("15.1", "bits per byte from a loss per token", reference=_bits_per_byte, cases=_bpb_cases, atol=1e-9,
         hints=("A loss per token is comparable across tokenizers only once it is spread over the same thing: "
                "the bytes of the text.",
                "Total nats = loss × number of tokens; divide by the number of bytes, then convert nats to bits.",
                "One bit is ln 2 nats."))


# ------------------------------------------------------------------------------------- 15.2 most frequent pair
def _pair_cases(rng):
    n, k = int(rng.integers(20, 300)), int(rng.integers(2, 8))
    yield Case(f"{n} random ids from {k} symbols", ([int(i) for i in rng.integers(0, k, n)],))
    a, b, c, d = (int(x) for x in rng.choice(50, 4, replace=False))
    yield Case("a tie: two pairs seen twice each", ([c, d, a, b, c, d, a, b],))
    yield Case("a tie where the larger pair comes first", ([max(a, b), min(a, b), 7 + 50, min(a, b), max(a, b)],))
    yield Case("b c b c a a a a: overlapping pairs count", ([b, c, b, c] + [a] * 4,))
    yield Case("two ids", ([a, b],))
    yield Case("one id: no pair", ([a],))
    yield Case("an empty list", ([],))


function("15.2", "the most frequent adjacent pair (ties: the pair seen first)", reference=_most_frequent_pair,
         cases=_pair_cases, same=_same_pair,
         hints=("Look at every neighbouring pair (ids[i], ids[i+1]) and count how often each occurs.",
                "zip(ids, ids[1:]) gives the pairs; a dict (or collections.Counter) counts them and remembers the "
                "order in which pairs were first seen — use that order for ties.",
                "With fewer than two ids there is no pair: return None."))


# ------------------------------------------------------------------------------------- 15.3 merge
def _merge_cases(rng):
    n = int(rng.integers(30, 300))
    ids = [int(i) for i in rng.integers(0, 6, n)]
    pair = (ids[3], ids[4])
    yield Case(f"{n} random ids, a pair that occurs", (ids, pair, 256))
    a, b = (int(x) for x in rng.choice(20, 2, replace=False))
    yield Case("overlapping: (a, a) in a a a", ([a, a, a], (a, a), 300))
    yield Case("overlapping: (a, a) in b a a a a b", ([b, a, a, a, a, b], (a, a), 301))
    yield Case("the pair at the end", ([b, b, a, b, a], (b, a), 256))
    yield Case("the pair reversed is not the pair", ([b, a, b, a], (a, b), 999))
    yield Case("an empty list", ([], (a, b), 256))
    yield Case("a single id", ([a], (a, a), 256))


function("15.3", "one BPE merge step: replace every (a, b) by a new id", reference=_merge, cases=_merge_cases,
         same=_same_ids,
         hints=("Walk through the list once, left to right, building a new list.",
                "At position i, if ids[i] and ids[i+1] are the pair, emit the new id and jump two places; otherwise "
                "emit ids[i] and move one place. Careful at the last position.",
                "a a a with the pair (a, a) becomes two ids, not one: a merged pair is not looked at again."))


# ------------------------------------------------------------------------------------- 15.4 train BPE
def _train_cases(rng):
    n = int(rng.integers(100, 400))
    yield Case(f"{n} random ids from 5 symbols, 8 merges",
               ([int(i) for i in rng.integers(0, 5, n)], 8, 256))
    text = "".join(rng.choice(["the ", "then ", "there ", "a "], size=30))
    yield Case("bytes of a small text, 10 merges", (list(text.encode()), 10, 256))
    yield Case("a run of one symbol, 3 merges", ([7] * 9, 3, 1000))
    yield Case("more merges than possible: stops at one id", ([1, 2, 3], 5, 256))
    yield Case("zero merges", ([4, 5, 4, 5], 0, 256))
    yield Case("an empty list", ([], 3, 256))


function("15.4", "train BPE on a list of ids: merges in order, and the final ids", reference=_train,
         cases=_train_cases, same=_same_training,
         hints=("Training is a loop of your two previous functions.",
                "Each round: find the most frequent pair, give it the next new id (first_id, first_id + 1, …), record "
                "it in the dict and merge it everywhere; stop early when no pair is left.",
                "Keep the dict in learning order: the encoder later applies merges by their rank."))


# ------------------------------------------------------------------------------------- 15.5 GPT-2 → kit names
def _gpt2_state(rng):
    d = 4 * int(rng.integers(2, 5))
    V, T, L = int(rng.integers(20, 60)), int(rng.integers(4, 9)), 2
    t = lambda *s: torch.tensor(rng.normal(size=s), dtype=torch.float32)  # noqa: E731
    state = {"transformer.wte.weight": t(V, d), "transformer.wpe.weight": t(T, d)}
    for i in range(L):
        h = f"transformer.h.{i}."
        state |= {h + "ln_1.weight": t(d), h + "ln_1.bias": t(d), h + "attn.bias": torch.tril(torch.ones(1, 1, T, T)),
                  h + "attn.c_attn.weight": t(d, 3 * d), h + "attn.c_attn.bias": t(3 * d),
                  h + "attn.c_proj.weight": t(d, d), h + "attn.c_proj.bias": t(d),
                  h + "ln_2.weight": t(d), h + "ln_2.bias": t(d),
                  h + "mlp.c_fc.weight": t(d, 4 * d), h + "mlp.c_fc.bias": t(4 * d),
                  h + "mlp.c_proj.weight": t(4 * d, d), h + "mlp.c_proj.bias": t(d)}
    state |= {"transformer.ln_f.weight": t(d), "transformer.ln_f.bias": t(d), "lm_head.weight": state["transformer.wte.weight"]}
    return state


def _entry_cases(rng):
    state = _gpt2_state(rng)
    yield Case("'transformer.h.1.attn.c_proj.weight' (square)", ("transformer.h.1.attn.c_proj.weight",
                                                                state["transformer.h.1.attn.c_proj.weight"]))
    for name in list(state):
        yield Case(repr(name), (name, state[name]))
    yield Case("'h.0.mlp.c_fc.weight' (a checkpoint saved without the 'transformer.' prefix)",
               ("h.0.mlp.c_fc.weight", state["transformer.h.0.mlp.c_fc.weight"]))


function("15.5", "a GPT-2 checkpoint tensor → kit's name and layout (or None)", reference=_hf_to_kit,
         cases=_entry_cases, same=_same_entry,
         hints=("Compare the two lists of names the lesson prints: what prefix goes, what is renamed?",
                "Hugging Face's Conv1D computes x @ W + b with W of shape (in, out); nn.Linear stores (out, in). Only "
                "the four Conv1D weights of each block need the other layout — embeddings and LayerNorms do not.",
                "Two kinds of entries have no kit parameter: the output matrix (kit ties it to the token embedding) "
                "and the causal-mask buffers of the attention."))
