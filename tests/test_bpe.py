"""Byte-level BPE from scratch: exact round trips, and the same ids as the `tokenizers` library on the same files."""
from __future__ import annotations

import random

import pytest

from kit.data.bpe import ByteLevelBPE, bytes_to_unicode

CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n") * 20
ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t\n\r.,;:!?'\"-()[]{}<>/\\@#$%^&*_+=~`|"
            "你好世界中文字符éèàüößñçÆØÅ😀🚀👍🏽 \u200b\u00a0٣٤Ωπ∑√∞ʼ’“”…\x00\x07")


def _random_text(rng: random.Random, n: int) -> str:
    out = []
    while len(out) < n:
        r = rng.random()
        if r < 0.1:
            out.append(" " * rng.randint(2, 6))  # whitespace runs
        elif r < 0.15:
            out.append("'s" if rng.random() < 0.5 else "'ll")
        else:
            out.append(rng.choice(ALPHABET))
    return "".join(out)


def _shakespeare(n_chars: int = 200_000) -> str:
    from kit.data.datasets import _tinyshakespeare_embedded
    return _tinyshakespeare_embedded().text[:n_chars]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    bpe = ByteLevelBPE.train(_shakespeare() + "你好，世界！你好。" * 5, vocab_size=400)
    folder = bpe.save(tmp_path_factory.mktemp("bpe"))
    return bpe, folder


def test_byte_table_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256 and all(c.isprintable() and c != " " for c in table.values())
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


def test_training_gives_the_asked_vocabulary_and_frequent_merges_first(trained):
    bpe, _ = trained
    assert bpe.vocab_size == 400 and len(bpe.merges) == 400 - 256 - 1
    assert bpe.special == {"<|endoftext|>": 399}
    text = _shakespeare()
    assert len(text.encode()) / len(bpe.encode(text)) > 1.6, "143 merges: > 1.6 bytes per token on their corpus"
    with pytest.raises(ValueError, match="vocab_size must be at least 257"):
        ByteLevelBPE.train("abc", vocab_size=100)


def test_round_trip_is_exact_on_any_unicode(trained):
    bpe, _ = trained
    rng = random.Random(0)
    for _ in range(200):
        text = _random_text(rng, rng.randint(0, 80))
        assert bpe.decode(bpe.encode(text)) == text
    assert bpe.decode(bpe.encode("你好，世界！")) == "你好，世界！"
    assert bpe.decode(bpe.encode("a<|endoftext|>b")) == "a<|endoftext|>b"
    assert bpe.decode(bpe.encode("a<|endoftext|>b", allowed_special="all")) == "a<|endoftext|>b"


def test_special_tokens_in_a_text_are_plain_text_unless_allowed(trained):
    """A user's text cannot inject the control token: like tiktoken, "<|endoftext|>" becomes id 399 only where
    allowed_special names it; disallowed_special="all" (tiktoken's default) refuses the text instead."""
    bpe, _ = trained
    text = "a<|endoftext|>b"
    plain = bpe.encode(text)
    assert 399 not in plain and len(plain) > 3 and plain == bpe.encode(text, allowed_special="none")
    assert plain == bpe._encode_ordinary(text) == bpe.encode(text, allowed_special=set())
    for allowed in ({"<|endoftext|>"}, ["<|endoftext|>"], "all"):
        ids = bpe.encode(text, allowed_special=allowed)
        assert ids[1] == 399 and ids == bpe.encode("a") + [399] + bpe.encode("b") and 399 not in plain
    with pytest.raises(ValueError, match=r"contains the special token '<\|endoftext\|>'.*allowed_special="):
        bpe.encode(text, disallowed_special="all")
    with pytest.raises(ValueError, match="contains the special token"):
        bpe.encode(text, disallowed_special={"<|endoftext|>"})
    assert bpe.encode(text, allowed_special="all", disallowed_special="all")[1] == 399   # allowed wins, as in tiktoken
    assert bpe.encode("no special token here", disallowed_special="all") == bpe.encode("no special token here")
    with pytest.raises(ValueError, match=r"names \['<\|endoftxt\|>'\], which are not special tokens"):
        bpe.encode(text, allowed_special={"<|endoftxt|>"})
    with pytest.raises(TypeError, match="a set of special tokens"):
        bpe.encode(text, allowed_special="<|endoftext|>")


def test_same_ids_as_the_tokenizers_library_with_the_same_files(trained):
    from tokenizers import ByteLevelBPETokenizer
    bpe, folder = trained
    ref = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    ref.add_special_tokens(["<|endoftext|>"])
    again = ByteLevelBPE.from_pretrained(folder)
    rng = random.Random(1)
    texts = [_random_text(rng, rng.randint(1, 120)) for _ in range(300)] + \
        [CORPUS, _shakespeare(1_000_000)[-50_000:], "你好，世界！", "x<|endoftext|>y"]
    for text in texts:   # tokenizers matches an added special token everywhere: kit's allowed_special="all"
        want = ref.encode(text).ids
        assert bpe.encode(text, allowed_special="all") == want, repr(text)
        assert again.encode(text, allowed_special="all") == want
        if "<|endoftext|>" not in text:
            assert bpe.encode(text) == want


def test_same_ids_as_tokenizers_on_a_vocabulary_tokenizers_trained(tmp_path):
    """Files written by the reference library (as GPT-2's are) load and encode identically."""
    from tokenizers import ByteLevelBPETokenizer
    ref = ByteLevelBPETokenizer()
    ref.train_from_iterator([CORPUS, "naïve café — 你好世界 🚀"], vocab_size=350, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    ref.save_model(str(tmp_path))
    ours = ByteLevelBPE.from_pretrained(tmp_path)
    rng = random.Random(2)
    for text in [_random_text(rng, rng.randint(1, 100)) for _ in range(200)] + [CORPUS]:
        assert ours.encode(text) == ref.encode(text).ids, repr(text)


def test_bad_inputs_are_clear(tmp_path, trained):
    bpe, _ = trained
    with pytest.raises(TypeError, match="takes a str"):
        bpe.encode(b"bytes")
    with pytest.raises(ValueError, match="token id 5000 is not in the vocabulary"):
        bpe.decode([5000])
    with pytest.raises(FileNotFoundError, match="no vocab.json"):
        ByteLevelBPE.from_pretrained(tmp_path)
