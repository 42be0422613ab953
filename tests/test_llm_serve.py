"""Continuous batching (kit.models.gpt.SlotKVCache, kit.serve.engine) and the OpenAI-compatible server
(kit.serve.llm_app), driven by the official `openai` client. A tiny random Llama (kit.models.llm.stand_in) serves in
most tests; the real SmolLM2 in the end-to-end test of `kit serve`, where it is installed."""
import asyncio
import subprocess
import sys
import time

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")

from kit.models.gpt import KVCache, SlotKVCache  # noqa: E402
from kit.models.llm import chat, complete, stand_in  # noqa: E402
from kit.serve.engine import Engine, QueueFull, Sampling  # noqa: E402
from kit.serve.llm_app import LLMServer  # noqa: E402

NAME = "tiny"
MESSAGES = [{"role": "user", "content": "What is a KV cache?"}]


@pytest.fixture(scope="module")
def tiny():
    """The stand-in with its own random output layer: with the tied one greedy decoding repeats the last prompt token
    (h ≈ its embedding), which would make "the same text" a weak check."""
    model, tok = stand_in()
    g = torch.Generator().manual_seed(1)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=g))
    return model, tok


@pytest.fixture(scope="module")
def server(tiny):
    model, tok = tiny
    with LLMServer(model, tok, name=NAME, max_batch=4, max_queue=32) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def slow_server():
    """One row, no queue, 20 ms per model call: a long answer holds the server busy for seconds."""
    model, tok = stand_in()
    real = model.forward

    def slow(*a, **k):
        time.sleep(0.02)
        return real(*a, **k)
    model.forward = slow
    with LLMServer(model, tok, name=NAME, max_batch=1, max_queue=0) as srv:
        yield srv


def _health(server) -> dict:
    return httpx.get(server.url + "/health").json()


# ---------------------------------------------------------------- the cache and the engine
def test_slot_cache_rows_decode_like_separate_caches(tiny):
    """One decode step over rows of different lengths gives each row the logits of its own KV-cached run."""
    model, _ = tiny
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, model.cfg.vocab_size, (n,), generator=g) for n in (3, 11, 6)]
    nxt = torch.randint(0, model.cfg.vocab_size, (3, 1), generator=g)
    slots = SlotKVCache(model.cfg, 4, "cpu", max_len=32, initial=4)   # grows on the way, keeping what it holds
    want = []
    with torch.inference_mode():
        for b, p in enumerate(prompts):
            row = slots.row(b, len(p))
            model(p[None], cache=row)
            slots.set_length(b, row.length)
            alone = KVCache(model.cfg, 1, "cpu", max_len=32)
            model(p[None], cache=alone)
            want.append(model(nxt[b:b + 1], cache=alone)[0, -1])
        got = model(nxt, cache=slots)[:, -1]
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-5)
    assert slots.lengths[:3] == [4, 12, 7] and 12 <= slots.max_len < 32
    slots.move(2, 0)     # a finished row 0 is refilled with the last running row
    assert slots.lengths[0] == 7
    torch.testing.assert_close(slots.k[:, 0, :, :7], slots.k[:, 2, :, :7])


def test_engine_joins_and_leaves_with_greedy_tokens_of_solo_runs(tiny):
    """5 prompts, 2 rows, different answer lengths: requests join as rows free up, and every answer is the greedy
    continuation `GPT.generate` gives that prompt alone."""
    model, tok = tiny
    prompts = ["Hello there", "A much longer prompt that goes on for a while", "x", "two words", "KV"]
    lengths = [9, 3, 14, 6, 11]
    with Engine(model, tok, max_batch=2) as eng:
        seqs = [eng.submit(tok.encode(p), Sampling(max_tokens=n, stop_at_eos=False)) for p, n in zip(prompts, lengths)]
        outs = [s.wait(60) for s in seqs]
        assert eng.load["mean_batch"] > 1.5
    for p, n, o in zip(prompts, lengths, outs):
        ids = torch.tensor(tok.encode(p))
        assert o.token_ids == model.generate(ids, n, temperature=0)[len(ids):].tolist()
        assert o.finish_reason == "length" and o.ttft_s <= o.total_s


def test_engine_sampling_is_reproducible_per_seed(tiny):
    model, tok = tiny
    s = Sampling(max_tokens=12, temperature=1.0, top_p=0.9, seed=7, stop_at_eos=False)
    with Engine(model, tok, max_batch=3) as eng:
        a, b, c = eng.generate(["hi", "hi", "hi"], s)
        d = eng.generate(["hi"], Sampling(max_tokens=12, temperature=1.0, seed=8, stop_at_eos=False))[0]
    assert a.token_ids == b.token_ids == c.token_ids != d.token_ids


def test_stop_string_across_tokens_is_cut_and_never_shown(tiny):
    model, tok = tiny
    with Engine(model, tok) as eng:
        full = eng.generate(["abc"], Sampling(max_tokens=20, stop_at_eos=False))[0].text
        stop = full[5:8]                       # three characters, so three byte tokens: it spans token boundaries
        pieces = []
        seq = eng.submit(tok.encode("abc"), Sampling(max_tokens=20, stop=(stop,), stop_at_eos=False),
                         lambda kind, data: pieces.append(data) if kind == "token" else None)
        out = seq.wait(30)
    assert out.finish_reason == "stop" and out.text == full[:full.index(stop)]
    assert "".join(pieces) == out.text


def test_engine_bounded_queue_cancel_and_a_failing_step():
    model, tok = stand_in()
    real, calls = model.forward, {"n": 0, "fail_at": None}

    def slow_or_failing(*a, **k):          # 10 ms a call: a 400-token answer holds the one row for seconds
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise RuntimeError("boom")
        time.sleep(0.01)
        return real(*a, **k)
    model.forward = slow_or_failing
    with Engine(model, tok, max_batch=1, max_queue=1) as eng:
        long = eng.submit(tok.encode("a"), Sampling(max_tokens=400, stop_at_eos=False))
        queued = eng.submit(tok.encode("b"), Sampling(max_tokens=2, stop_at_eos=False))
        with pytest.raises(QueueFull):
            eng.submit(tok.encode("c"), Sampling(max_tokens=2))
        long.cancel()
        assert long.wait(30).finish_reason == "cancelled" and len(long.result.token_ids) < 400
        assert queued.wait(30).finish_reason == "length"
        calls["fail_at"] = calls["n"] + 2   # the first decode step of the next request fails
        bad = eng.submit(tok.encode("d"), Sampling(max_tokens=5, stop_at_eos=False)).wait(30)
        assert bad.finish_reason == "error" and "boom" in bad.error
        assert eng.generate(["e"], Sampling(max_tokens=3, stop_at_eos=False))[0].finish_reason == "length"
    with pytest.raises(ValueError, match="context"):
        Engine(model, tok, max_context=16).check(list(range(20)), Sampling())


# ---------------------------------------------------------------- the server, through the openai client
def test_greedy_chat_equals_kit_chat_streamed_or_not(tiny, client):
    model, tok = tiny
    want = "".join(chat(model, tok, MESSAGES, max_new_tokens=16, temperature=0))
    r = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=16, temperature=0)
    assert r.choices[0].message.content == want and r.choices[0].message.role == "assistant"
    assert r.usage.completion_tokens <= 16 and r.usage.prompt_tokens == len(tok.encode(
        tok.apply_chat_template(MESSAGES, add_generation_prompt=True)))
    chunks = list(client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=16, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_completions_n_seed_and_stop(tiny, client):
    model, tok = tiny
    want = complete(model, tok, "Once upon", max_new_tokens=10, temperature=0)
    r = client.completions.create(model=NAME, prompt="Once upon", max_tokens=10, temperature=0, n=2)
    assert [c.text for c in r.choices] == [want, want] and [c.index for c in r.choices] == [0, 1]
    a = client.completions.create(model=NAME, prompt="Once upon", max_tokens=10, temperature=1, seed=3)
    b = client.completions.create(model=NAME, prompt="Once upon", max_tokens=10, temperature=1, seed=3)
    assert a.choices[0].text == b.choices[0].text
    if len(want) > 4:
        cut = client.completions.create(model=NAME, prompt="Once upon", max_tokens=10, temperature=0, stop=[want[2:4]])
        assert cut.choices[0].text == want[:want.index(want[2:4])] and cut.choices[0].finish_reason == "stop"


BAD = [
    ({"model": "gpt-4"}, openai.NotFoundError, 404, "model"),
    ({"max_tokens": 0}, openai.BadRequestError, 400, "max_tokens"),
    ({"max_tokens": 10 ** 6}, openai.BadRequestError, 400, "max_tokens"),
    ({"temperature": "hot"}, openai.BadRequestError, 400, "temperature"),
    ({"temperature": 5}, openai.BadRequestError, 400, "temperature"),
    ({"top_p": 0}, openai.BadRequestError, 400, "top_p"),
    ({"n": 50}, openai.BadRequestError, 400, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, openai.BadRequestError, 400, "stop"),
    ({"messages": []}, openai.BadRequestError, 400, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, openai.BadRequestError, 400, "messages"),
    ({"messages": [{"role": "user", "content": 42}]}, openai.BadRequestError, 400, "messages"),
    ({"messages": [{"role": "user", "content": "many words " * 400}]}, openai.BadRequestError, 400, "messages"),
    ({"messages": [{"role": "user", "content": "x" * 900_000}]}, openai.BadRequestError, 400, "messages"),
    ({"stop": "s" * 10_000}, openai.BadRequestError, 400, "stop"),
]


@pytest.mark.parametrize("change,error,status,param", BAD, ids=[b[3] + str(i) for i, b in enumerate(BAD)])
def test_bad_requests_are_openai_errors_and_the_server_goes_on(client, server, change, error, status, param):
    body = {"model": NAME, "messages": MESSAGES, **change}
    with pytest.raises(error) as e:
        client.chat.completions.create(**body)
    assert e.value.status_code == status
    err = e.value.body
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"].count(".") <= 2
    r = httpx.post(server.url + "/v1/chat/completions", json=body)     # the same, raw: OpenAI's shape
    assert r.status_code == status and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=2).choices


@pytest.mark.parametrize("raw,status", [(b"{not json", 400), (b"[" * 100_000 + b"]" * 100_000, 400),
                                        (b'"a string"', 400), (b'{"model": "tiny", "prompt": 7}', 400),
                                        (b"x" * 2_000_001, 413)])
def test_malformed_bodies(server, raw, status):
    r = httpx.post(server.url + "/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status and "message" in r.json()["error"]
    assert _health(server)["status"] == "ok"


def test_routes_models_health_metrics(server, client):
    assert [m.id for m in client.models.list()] == [NAME]
    h = _health(server)
    assert h["status"] == "ok" and h["model"] == NAME
    client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=3)
    text = httpx.get(server.url + "/metrics").text
    for key in ("kit_llm_requests_total", "kit_llm_time_to_first_token_seconds_bucket", "kit_llm_inter_token_seconds",
                "kit_llm_completion_tokens_total", "kit_llm_running", "kit_llm_waiting"):
        assert key in text


def test_a_client_that_disconnects_frees_its_row_and_a_full_queue_answers_429(slow_server):
    srv = slow_server
    c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    body = {"model": NAME, "prompt": "go", "max_tokens": 400, "stream": True, "temperature": 0}
    with httpx.stream("POST", srv.url + "/v1/completions", json=body) as r:
        lines = r.iter_lines()    # kept: a closed iterator would close the connection
        assert next(line for line in lines if line.startswith("data: "))
        assert _health(srv)["running"] == 1
        with pytest.raises(openai.RateLimitError) as e:    # the one row is busy and nobody may wait
            c.completions.create(model=NAME, prompt="hi", max_tokens=2)
        assert e.value.body["type"] == "rate_limit_error"
    t0 = time.perf_counter()                               # the client went away: its row is free at once
    while _health(srv)["running"] and time.perf_counter() - t0 < 5:
        time.sleep(0.02)
    assert _health(srv)["running"] == 0 and time.perf_counter() - t0 < 1
    assert c.completions.create(model=NAME, prompt="hi", max_tokens=2).choices


def test_twenty_concurrent_streams_all_complete(tiny, server):
    model, tok = tiny
    prompts = [f"request {i}:" for i in range(20)]
    want = [complete(model, tok, p, max_new_tokens=12, temperature=0) for p in prompts]

    async def run():
        c = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)

        async def one(p):
            text, reason = [], None
            async for ch in await c.completions.create(model=NAME, prompt=p, max_tokens=12, temperature=0,
                                                       stream=True):
                text.append(ch.choices[0].text)
                reason = ch.choices[0].finish_reason or reason
            return "".join(text), reason
        try:
            return await asyncio.gather(*(one(p) for p in prompts))
        finally:
            await c.close()
    got = asyncio.run(run())
    assert [t for t, _ in got] == want and all(r in ("stop", "length") for _, r in got)
    assert _health(server)["mean_batch"] > 1


def test_load_helpers_time_streams(server):
    from kit.serve.llm_load import closed_loop, open_loop
    bodies = [{"model": NAME, "prompt": f"p{i}", "max_tokens": 6, "temperature": 0} for i in range(6)]
    r = closed_loop(server.url + "/v1/completions", bodies, concurrency=3)
    assert r["requests"] == 6 and r["failed"] == 0 and r["tokens"] > 0 and r["ttft_p99_ms"] >= r["ttft_p50_ms"] > 0
    o = open_loop(server.url + "/v1/completions", bodies, rate=20.0)
    assert o["failed"] == 0 and o["offered_rps"] == 20.0


# ---------------------------------------------------------------- `kit serve` as a process
def _stream_chat(url: str, model: str) -> str:
    c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    chunks = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hello."}],
                                       max_tokens=8, temperature=0, stream=True)
    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)


def test_kit_serve_tiny_process():
    from kit.serve.app import ServerProcess
    with ServerProcess("tiny", max_batch=2) as srv:
        assert isinstance(_stream_chat(srv.url, "tiny"), str)
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"
    bad = subprocess.run([sys.executable, "-m", "kit.serve", "no-such-model"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("kit serve:") and "Traceback" not in bad.stderr


def test_kit_serve_smollm2_streams_and_greedy_equals_kit_generate():
    """The real thing, offline: `kit serve SmolLM2-135M-Instruct`, the openai client streams a chat completion, and a
    greedy completion through the API is `kit generate`'s text."""
    from kit.data.llm_files import resolve_llm
    try:
        resolve_llm("SmolLM2-135M-Instruct")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"SmolLM2 not installed: {e}")
    from kit.serve.app import ServerProcess
    prompt = "The three primary colours are"
    gen = subprocess.Popen([sys.executable, "-m", "kit", "generate", prompt, "--temperature", "0",
                            "--max-new-tokens", "12", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:                       # both load the model at once (loading is most of the time)
        with ServerProcess("SmolLM2-135M-Instruct", timeout=300) as srv:
            assert _stream_chat(srv.url, "SmolLM2-135M-Instruct").strip()
            c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=120)
            r = c.completions.create(model="SmolLM2-135M-Instruct", prompt=prompt, max_tokens=12, temperature=0)
        out, err = gen.communicate(timeout=300)
    finally:
        gen.kill()
    assert gen.returncode == 0, err
    assert prompt + r.choices[0].text == out.rstrip("\n")
