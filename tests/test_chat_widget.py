"""kit.viz.chat against a real :class:`~kit.serve.llm_app.LLMServer` over the tiny random stand-in model: the streamed
answer arrives in pieces and equals the server's greedy non-streamed answer; errors (HTTP, mid-stream, network) are
shown and the box goes on; Stop frees the server's row; an executed notebook (papermill, as ``kit run`` runs one)
keeps the conversation as static, escaped HTML that the HTML report shows."""
from __future__ import annotations

import html
import socket
import time

import httpx
import nbformat
import pytest

from kit.viz.chat import ChatError, ChatStream, chat_widget, transcript_html

MODEL = "tiny"


@pytest.fixture(scope="module")
def server():
    from kit.models.llm import stand_in
    from kit.serve.llm_app import LLMServer
    model, tok = stand_in()
    with LLMServer(model, tok, name=MODEL) as srv:
        yield srv


def greedy(server, messages, max_tokens) -> str:
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   json={"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


@pytest.fixture
def patched_model(server):
    """``patch(fn)``: the server's model runs ``fn(forward, idx, *a, **kw)`` until the test ends."""
    model = server.engine.model
    forward = model.forward

    def patch(fn):
        model.forward = lambda idx, *a, **kw: fn(forward, idx, *a, **kw)
    yield patch
    model.__dict__.pop("forward", None)


def test_stream_arrives_in_pieces_equal_to_the_greedy_answer(server):
    messages = [{"role": "user", "content": "Hello <there> & welcome"}]
    stream = ChatStream(server.url, MODEL, messages, temperature=0, max_tokens=50)
    pieces = list(stream)
    assert len(pieces) > 1
    assert "".join(pieces) == greedy(server, messages, 50)
    assert stream.finish_reason in ("stop", "length")


def test_box_streams_the_answer_and_keeps_the_conversation(server):
    box = chat_widget(server.url + "/", MODEL, temperature=0, max_tokens=60, show=False)
    box.refresh_s = 0   # a redraw per piece
    views = []
    box.view.observe(lambda c: views.append(c["new"]), names="value")
    question = "What is <b>1 & 2</b>?"
    answer = box.send(question)
    expected = greedy(server, [{"role": "user", "content": question}], 60)
    assert answer == expected and box.error is None
    assert len({v for v in views}) > 3, "the answer was not drawn as it arrived"
    assert box.messages == [{"role": "user", "content": question}, {"role": "assistant", "content": expected}]
    # the second question goes with the conversation so far
    answer2 = box.send("and then?")
    assert answer2 == greedy(server, box.messages[:-1], 60)
    page = box.html()
    assert html.escape(question) in page and question not in page
    assert html.escape(expected) in page and html.escape(answer2) in page
    assert box.view.value == page
    assert box.send_button.disabled is False and box.stop_button.disabled is True


def test_errors_are_shown_and_the_next_question_is_answered(server, patched_model):
    box = chat_widget(server.url, MODEL, temperature=0, max_tokens=5000, show=False)
    assert box.send("too long") is None                    # over the server's max_tokens cap: a 400
    assert "400" in box.error and "max_tokens" in box.error
    assert html.escape(box.error) in box.status.value and html.escape(box.error) in box.html()
    box.model = "nope"
    box.max_tokens.value = 20
    assert box.send("unknown model") is None and "404" in box.error
    box.model = MODEL
    calls = {"n": 0}

    def fail_on_third_decode(forward, idx, *a, **kw):
        if idx.shape[1] == 1:
            calls["n"] += 1
            if calls["n"] >= 3:
                raise RuntimeError("the accelerator caught fire")
        return forward(idx, *a, **kw)
    patched_model(fail_on_third_decode)
    assert box.send("mid-stream failure") is None and "caught fire" in box.error
    server.engine.model.__dict__.pop("forward")
    assert box.send("well again?") == greedy(server, [{"role": "user", "content": "well again?"}], 20)
    assert box.error is None and box.status.value == ""
    assert [m["content"] for m in box.messages if m["role"] == "user"] == ["well again?"]   # failed turns left out
    assert box.html().count("kit-chat-error") == 3


def test_network_failure_is_a_chat_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # nothing listens there once closed
    with pytest.raises(ChatError, match="network error"):
        list(ChatStream(f"http://127.0.0.1:{port}", MODEL, [{"role": "user", "content": "hi"}]))
    box = chat_widget(f"http://127.0.0.1:{port}", MODEL, show=False)
    assert box.send("anyone?") is None and box.error.startswith("network error")


def test_send_button_streams_in_a_thread_and_stop_frees_the_row(server, patched_model):
    def slow(forward, idx, *a, **kw):
        time.sleep(0.02)
        return forward(idx, *a, **kw)
    patched_model(slow)
    box = chat_widget(server.url, MODEL, temperature=0, max_tokens=400, show=False)
    box.text.value = "a long answer, please"         # Enter in the text box (continuous_update=False) sends
    deadline = time.time() + 30
    while len(box.turns) < 2 or len(box.turns[-1]["content"]) < 5:
        assert time.time() < deadline, "no answer arrived"
        time.sleep(0.02)
    assert box.thread.is_alive() and box.send_button.disabled and not box.stop_button.disabled
    box.stop_button.click()
    box.thread.join(10)
    assert not box.thread.is_alive()
    assert box.turns[-1].get("note") == "stopped" and 5 <= len(box.turns[-1]["content"]) < 400
    deadline = time.time() + 10
    while server.engine.load["running"] and time.time() < deadline:   # the server saw the client go
        time.sleep(0.05)
    assert server.engine.load["running"] == 0


def test_transcript_html_escapes_everything():
    page = transcript_html([{"role": "user", "content": "<script>alert(1)</script>"},
                            {"role": "assistant", "content": "a & b", "note": "<i>n</i>"},
                            {"role": "user", "content": "x"}, {"role": "assistant", "content": "", "error": "<oops>"}],
                           title="<t>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &amp; b" in page
    assert "&lt;i&gt;n&lt;/i&gt;" in page and "&lt;oops&gt;" in page and "&lt;t&gt;" in page


@pytest.mark.notebook
def test_an_executed_notebook_and_its_report_keep_the_transcript(server, tmp_path):
    """The box displayed in one cell, a question sent from the next (no clicks in a papermill run): the first cell's
    output is updated with the conversation as static HTML, which the report keeps when it drops the widget view."""
    from kit.lessons.execute import run_notebook
    from kit.lessons.report import notebook_to_html
    from kit.viz.widgets import WIDGET_MIME
    question = "Is <b>this</b> & that escaped?"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"from kit.viz.chat import chat_widget\n"
                                  f"chat = chat_widget({server.url!r}, {MODEL!r}, temperature=0, max_tokens=30)"),
        nbformat.v4.new_code_cell(f"answer = chat.send({question!r})\nassert chat.error is None, chat.error"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "chat.ipynb", tmp_path / "out" / "chat.ipynb"
    out.parent.mkdir()
    nbformat.write(nb, src)
    run_notebook(src, out, {}, cwd=tmp_path, timeout=120, stall_timeout=None)
    executed = nbformat.read(out, as_version=4)
    data = [o for o in executed.cells[0].outputs if o.output_type == "display_data"]
    assert len(data) == 1 and WIDGET_MIME in data[0].data
    static = data[0].data["text/html"]
    answer = greedy(server, [{"role": "user", "content": question}], 30)
    assert html.escape(question) in static and html.escape(answer) in static and "<b>this</b>" not in static
    report = notebook_to_html(out).read_text()
    assert html.escape(question) in report and "kit-chat-assistant" in report and WIDGET_MIME not in report
