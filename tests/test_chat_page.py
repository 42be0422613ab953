"""kit serve's chat page (``GET /``, kit/serve/static/chat.html) in headless Chromium, against a real
:class:`~kit.serve.llm_app.LLMServer` over the tiny random stand-in model.

A question typed and sent with Enter is answered token by token (the text grows in several steps) and ends equal to
the server's greedy non-streamed answer; an HTTP error, a failure mid-stream and a network failure each show one
message and the page answers the next question; model text is shown as text; the page asks no other origin.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import httpx
import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed")]

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic"]
MODEL = "tiny"


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server():
    from kit.models.llm import stand_in
    from kit.serve.llm_app import LLMServer
    model, tok = stand_in()
    with LLMServer(model, tok, name=MODEL) as srv:
        yield srv


@pytest.fixture
def chat(browser, server, tmp_path):
    """The chat page, fresh; every request to another origin is aborted and recorded in ``page.foreign``."""
    ctx = browser.new_context(viewport={"width": 1000, "height": 800})
    page = ctx.new_page()
    page.foreign = []
    page.on("request", lambda r: None if r.url.startswith((server.url + "/", "data:")) else page.foreign.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith((server.url, "data:"))
               else route.abort())
    page.goto(server.url + "/")
    page.wait_for_load_state("load")
    yield page
    shots = Path(os.environ.get("KIT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "chat_page.png"))
    ctx.close()


@pytest.fixture
def patched_model(server):
    """``patch(fn)``: the server's model runs ``fn(forward, idx, *a, **kw)`` until ``patch(None)`` or the test's end."""
    model = server.engine.model
    forward = model.forward

    def patch(fn):
        model.__dict__.pop("forward", None)
        if fn is not None:
            model.forward = lambda idx, *a, **kw: fn(forward, idx, *a, **kw)
    yield patch
    patch(None)


def slow(forward, idx, *a, **kw):   # 10 ms a step: an answer of 100 tokens takes a second or more
    time.sleep(0.01)
    return forward(idx, *a, **kw)


def greedy(server, messages, max_tokens) -> str:
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   json={"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def settings(page, temperature=0, max_tokens=64, model=MODEL):
    page.fill("#temperature", str(temperature))
    page.fill("#max_tokens", str(max_tokens))
    page.fill("#model", model)


def ask(page, question: str, timeout=60_000) -> None:
    """Type a question, press Enter, wait until the answer is over (Send enabled again, nothing streaming)."""
    page.fill("#input", question)
    page.press("#input", "Enter")
    page.wait_for_function("() => !document.querySelector('#send').disabled && !document.querySelector('.streaming')",
                           timeout=timeout)


def answers(page) -> list[str]:
    return page.eval_on_selector_all(".msg.assistant", "els => els.map(e => e.textContent)")


def error_shown(page) -> str | None:
    return page.evaluate("() => { const e = document.querySelector('#error'); return e.hidden ? null : e.textContent }")


def test_page_is_served_with_the_model_name_and_no_external_url(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'value="{MODEL}"' in r.text and "{{MODEL}}" not in r.text
    assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text


def test_answer_streams_in_and_equals_the_greedy_answer(chat, server, patched_model):
    settings(chat, temperature=0, max_tokens=160)
    patched_model(slow)
    # every change of the answer's text is recorded as it happens
    chat.evaluate("""() => {
        window.lengths = [];
        new MutationObserver(() => {
            const a = [...document.querySelectorAll('.msg.assistant')].pop();
            if (a) window.lengths.push(a.textContent.length);
        }).observe(document.querySelector('#log'), {childList: true, subtree: true, characterData: true});
    }""")
    question = "Tell me a story about <b>tags</b> & ampersands."
    ask(chat, question)
    patched_model(None)
    lengths = chat.evaluate("window.lengths")
    expected = greedy(server, [{"role": "user", "content": question}], 160)
    assert len(expected) > 20
    assert answers(chat) == [expected]
    assert chat.locator(".msg.user").all_text_contents() == [question]
    assert chat.locator("#log b").count() == 0   # the question was shown as text, not parsed as HTML
    steps = sorted(set(n for n in lengths if 0 < n < len(expected)))
    assert len(steps) >= 3, f"the answer did not arrive in steps: lengths seen {lengths[:50]}"
    assert error_shown(chat) is None
    # the second question goes with the whole conversation so far
    second = "And then?"
    ask(chat, second)
    history = [{"role": "user", "content": question}, {"role": "assistant", "content": expected},
               {"role": "user", "content": second}]
    assert answers(chat) == [expected, greedy(server, history, 160)]
    assert chat.evaluate("kitChat.history().length") == 4
    assert chat.foreign == []


def test_server_errors_show_one_message_and_the_page_goes_on(chat, server):
    settings(chat, temperature=0, max_tokens=5000)      # over the server's cap of 1024: a 400 before streaming
    ask(chat, "first question")
    message = error_shown(chat)
    assert message and "400" in message and "max_tokens" in message, message
    assert chat.input_value("#input") == "first question"   # given back to send again
    settings(chat, model="no-such-model", max_tokens=16)    # an unknown model: 404
    ask(chat, "second question")
    message = error_shown(chat)
    assert message and "404" in message and "does not exist" in message, message
    assert chat.locator("#error").count() == 1
    settings(chat, temperature=0, max_tokens=24)
    ask(chat, "third question")
    assert error_shown(chat) is None
    # the failed turns are not part of the conversation: the answer is the one to the third question alone
    assert answers(chat)[-1] == greedy(server, [{"role": "user", "content": "third question"}], 24)
    assert chat.evaluate("kitChat.history().length") == 2
    assert chat.foreign == []


def test_a_failure_mid_stream_shows_the_error_and_the_next_answer_works(chat, server, patched_model):
    """The model fails on its third decode step: tokens have streamed, then the server sends an SSE error event."""
    calls = {"decode": 0}

    def failing(forward, idx, *a, **kw):
        if idx.shape[1] == 1:
            calls["decode"] += 1
            if calls["decode"] >= 3:
                raise RuntimeError("the accelerator caught fire")
        return forward(idx, *a, **kw)

    settings(chat, temperature=0, max_tokens=40)
    patched_model(failing)
    ask(chat, "break please")
    patched_model(None)
    message = error_shown(chat)
    assert message and "caught fire" in message, message
    assert chat.locator(".msg.assistant.failed").count() == 1   # the part that came is kept, marked failed
    ask(chat, "are you well again?")
    assert error_shown(chat) is None
    assert answers(chat)[-1] == greedy(server, [{"role": "user", "content": "are you well again?"}], 40)
    assert chat.foreign == []


def test_network_failure_and_a_cut_stream(chat, server):
    settings(chat, temperature=0, max_tokens=16)
    url = server.url + "/v1/chat/completions"
    chat.route(url, lambda route: route.abort("connectionrefused"))
    ask(chat, "hello?")
    message = error_shown(chat)
    assert message and message.startswith("Network error"), message
    # a stream that ends without [DONE] (the server went away mid-answer)
    head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    cut = "".join(f"data: {json.dumps({**head, 'choices': [{'index': 0, 'delta': {'content': c}}]})}\n\n"
                  for c in "abc")
    chat.unroute(url)
    chat.route(url, lambda route: route.fulfill(status=200, content_type="text/event-stream", body=cut))
    ask(chat, "hello again?")
    message = error_shown(chat)
    assert message and "closed before the answer was complete" in message, message
    chat.unroute(url)
    ask(chat, "third time lucky")
    assert error_shown(chat) is None
    assert answers(chat)[-1] == greedy(server, [{"role": "user", "content": "third time lucky"}], 16)


def test_model_text_is_shown_as_text(chat, server):
    """Several frames in one read (a fulfilled body comes whole), HTML in the deltas: text, never markup."""
    head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    pieces = ["<img src=x onerror=\"window.pwned=1\">", " & <b>bold</b>", " é ✓"]
    body = "".join(f"data: {json.dumps({**head, 'choices': [{'index': 0, 'delta': {'content': p}}]})}\n\n"
                   for p in pieces)
    body += f"data: {json.dumps({**head, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
    body += "data: [DONE]\n\n"
    chat.route(server.url + "/v1/chat/completions",
               lambda route: route.fulfill(status=200, content_type="text/event-stream; charset=utf-8", body=body))
    ask(chat, "say something risky")
    assert answers(chat) == ["".join(pieces)]
    assert chat.locator("#log img, #log b").count() == 0
    assert chat.evaluate("window.pwned") is None
    assert error_shown(chat) is None


def test_sse_frames_split_anywhere_parse_the_same(chat):
    """The page's parser: the same events whether a stream comes whole, byte by byte, or cut at random places;
    CRLF and CR line ends, multi-line data and comments as the SSE spec says."""
    got = chat.evaluate("""() => {
        const stream = 'data: {"a":1}\\n\\n: a comment\\ndata: two\\ndata:lines\\n\\ndata: x\\r\\n\\r\\n'
                     + 'data: y\\r\\rdata: [DONE]\\n\\n' + 'data: never complete';
        const run = (cuts) => { const out = []; const feed = kitChat.sseParser(d => out.push(d));
            let at = 0; for (const c of [...cuts, stream.length]) { feed(stream.slice(at, c)); at = c; } return out; };
        const whole = run([]);
        const bytes = run([...Array(stream.length).keys()].slice(1));
        const random = []; let seed = 7;
        for (let k = 0; k < 50; k++) {
            const cuts = [];
            for (let i = 1; i < stream.length; i++) {
                seed = (seed * 16807) % 2147483647;
                if (seed % 5 === 0) cuts.push(i);
            }
            random.push(JSON.stringify(run(cuts)));
        }
        return {whole, bytes, random: [...new Set(random)]};
    }""")
    expected = ['{"a":1}', "two\nlines", "x", "y", "[DONE]"]
    assert got["whole"] == expected and got["bytes"] == expected
    assert got["random"] == [json.dumps(expected, separators=(",", ":"))]


def test_stop_aborts_the_answer_and_frees_the_row(chat, server, patched_model):
    settings(chat, temperature=0, max_tokens=400)
    patched_model(slow)   # the answer takes seconds: time enough to press Stop
    chat.fill("#input", "a long answer please")
    chat.press("#input", "Enter")
    chat.wait_for_function("() => { const a = document.querySelector('.msg.assistant'); "
                           "return a && a.textContent.length > 5 }", timeout=30_000)
    chat.click("#stop")
    chat.wait_for_function("() => !document.querySelector('#send').disabled", timeout=10_000)
    assert chat.locator(".note").last.text_content() == "(stopped by you)"
    assert error_shown(chat) is None
    n = len(answers(chat)[0])
    assert 5 < n < 400
    deadline = time.time() + 10
    while server.engine.load["running"] and time.time() < deadline:   # the server saw the client go
        time.sleep(0.05)
    assert server.engine.load["running"] == 0


# ------------------------------------------------------------------ the same in JupyterLab: kit.viz.chat's widget

@pytest.fixture(scope="module")
def lab_with_chat(server, lab_folder, jupyterlab):
    """The browser tests' JupyterLab, its folder holding one more notebook that shows ``chat_widget(server.url, …)``."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from kit.viz.chat import chat_widget\n"
        f"chat = chat_widget({server.url!r}, {MODEL!r}, temperature=0, max_tokens=60)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab_folder / "chat.ipynb")
    yield jupyterlab
    (lab_folder / "chat.ipynb").unlink(missing_ok=True)


def test_jupyterlab_chat_widget_streams_the_answer(browser, server, lab_with_chat, patched_model, tmp_path):
    base, token = lab_with_chat
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(f"{base}/lab/tree/chat.ipynb?token={token}&reset")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=120_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        box = page.locator(".widget-text input").first
        box.wait_for(timeout=120_000)
        page.evaluate("""() => {
            window.lengths = [];
            const view = document.querySelector('.widget-html-content');
            new MutationObserver(() => {
                const a = [...view.querySelectorAll('.kit-chat-assistant')].pop();
                if (a) window.lengths.push(a.textContent.length);
            }).observe(view, {childList: true, subtree: true, characterData: true});
        }""")
        question = "Hi from <b>JupyterLab</b>"
        patched_model(slow)   # the answer takes about a second, drawn in many redraws
        box.fill(question)
        box.press("Enter")
        page.wait_for_function("() => document.querySelector('.kit-chat-assistant')", timeout=60_000)
        page.wait_for_function("() => ![...document.querySelectorAll('.widget-button')]"
                               ".find(b => b.textContent.includes('Send')).disabled", timeout=60_000)
    finally:
        patched_model(None)
        page.screenshot(path=str(Path(os.environ.get("KIT_SCREENSHOTS", tmp_path)) / "chat_widget_lab.png"))
    expected = greedy(server, [{"role": "user", "content": question}], 60)
    got = page.evaluate("() => [...document.querySelectorAll('.kit-chat-assistant')].map(e => e.textContent)")
    assert got == [expected]
    assert page.locator(".kit-chat-user").all_text_contents() == [question]
    lengths = page.evaluate("window.lengths")
    assert len(set(n for n in lengths if 0 < n < len(expected))) >= 3, f"not streamed: {lengths[:40]}"
    page.close()
