"""A chat box for JupyterLab over an OpenAI-compatible server (``kit serve``'s LLM routes or any other): the answer
streams in as the server sends it, and the conversation stays behind as static HTML for reports.

    chat = chat_widget(srv.url, "SmolLM2-135M-Instruct")   # shows the box: type, Enter or Send; Stop
    chat.send("What is a transformer?")                      # the same from code: a papermill run's report shows it

kit.viz talks HTTP only (httpx); it imports nothing from kit.serve. The pieces: :class:`ChatStream` (one streamed
answer, an iterator of text pieces), :func:`transcript_html` / :func:`show_transcript` (a conversation as static
HTML, escaped), :class:`ChatBox` (the widget).
"""
from __future__ import annotations

import html
import json
import threading
import time
from typing import Iterator

__all__ = ["ChatBox", "ChatError", "ChatStream", "chat_widget", "show_transcript", "transcript_html"]  # noqa: F822 (ChatBox: module __getattr__)


class ChatError(RuntimeError):
    """The server refused or failed the request, or could not be reached: one sentence saying which."""


class ChatStream:
    """One answer, streamed: iterate for its text pieces as the server sends them (server-sent events read with
    httpx's streaming API). ``finish_reason`` afterwards: "stop", "length", or "stopped" after :meth:`stop`
    (which closes the connection, so the server frees the answer's row). Raises :class:`ChatError`."""

    def __init__(self, url: str, model: str, messages: list[dict], *, temperature: float = 0.0,
                 max_tokens: int = 256, timeout: float = 60.0):
        self.endpoint = url.rstrip("/") + "/v1/chat/completions"
        self.body = {"model": model, "messages": list(messages), "stream": True, "temperature": temperature,
                     "max_tokens": max_tokens}
        self.timeout = timeout
        self.finish_reason: str | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the stream to end at the next piece (safe from another thread)."""
        self._stop.set()

    def __iter__(self) -> Iterator[str]:
        import httpx
        done = False
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=10.0)) as client, \
                    client.stream("POST", self.endpoint, json=self.body) as resp:
                if resp.status_code >= 400:
                    raise ChatError(f"error {resp.status_code}: {_message(resp.read())}")
                for data in _sse_data(resp.iter_lines()):
                    if self._stop.is_set():
                        self.finish_reason = "stopped"
                        return
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise ChatError(f"the server sent an event that is not JSON: {data[:200]!r}") from None
                    if "error" in event:
                        raise ChatError(f"error: {(event['error'] or {}).get('message', 'the server failed')}")
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
                        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        except httpx.HTTPError as e:
            raise ChatError(f"network error: {type(e).__name__}: {e or 'no detail'} (is the server running?)") from e
        if not done:
            raise ChatError("the connection closed before the answer was complete")


def _sse_data(lines) -> Iterator[str]:
    """Server-sent events' ``data`` (lines joined) from the body's lines, one per event (ends at a blank line)."""
    data = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])


def _message(body: bytes) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:300] or "no detail"


# ---------------------------------------------------------------- static HTML of a conversation
_STYLE = ("font-family:system-ui,sans-serif;font-size:14px;max-width:900px;display:flex;flex-direction:column;"
          "gap:6px;padding:6px 0")
_TURN = {"user": "align-self:flex-end;background:#dbeafe",
         "assistant": "align-self:flex-start;background:#fff;border:1px solid #ddd",
         "system": "align-self:stretch;background:#f3f3f3;color:#555"}


def transcript_html(turns: list[dict], title: str = "") -> str:
    """A conversation as one self-contained HTML block (inline styles, every text escaped). ``turns``: OpenAI
    messages ``{"role", "content"}``, optionally with a ``"note"`` (shown under the turn, e.g. "stopped at
    max_tokens") or an ``"error"`` (shown in red instead of an answer)."""
    rows = [f"<div style='font-size:12px;color:#666'>{html.escape(title)}</div>"] if title else []
    for t in turns:
        if t.get("error"):
            rows.append(f"<div class='kit-chat-error' style='color:#8a1c1c;background:#fde2e1;padding:4px 10px;"
                        f"border-radius:6px'>{html.escape(t['error'])}</div>")
            continue
        style = _TURN.get(t["role"], _TURN["system"])
        rows.append(f"<div class='kit-chat-{html.escape(t['role'])}' style='{style};white-space:pre-wrap;"
                    f"overflow-wrap:anywhere;padding:6px 10px;border-radius:8px;max-width:85%'>"
                    f"{html.escape(t.get('content') or '')}</div>")
        if t.get("note"):
            rows.append(f"<div style='font-size:12px;color:#777'>({html.escape(t['note'])})</div>")
    if not turns:
        rows.append("<div style='color:#888'>(no messages yet)</div>")
    return f"<div class='kit-chat' style='{_STYLE}'>{''.join(rows)}</div>"


def show_transcript(turns: list[dict], title: str = "") -> None:
    """Display :func:`transcript_html` (static: it stays in the executed notebook and its HTML report)."""
    from IPython.display import HTML, display
    display(HTML(transcript_html(turns, title)))


# ---------------------------------------------------------------- the widget
_BOX = None


def _box_class():
    """:class:`ChatBox`, built once on first use (it subclasses an ipywidgets class: kit.viz imports without it)."""
    global _BOX
    if _BOX is not None:
        return _BOX
    import ipywidgets as w

    class ChatBox(w.VBox):
        """The chat widget (an ipywidgets ``VBox``): the conversation, a text box (Enter sends), Send and Stop,
        temperature and max_tokens. See :func:`chat_widget`."""

        def __init__(self, url: str, model: str, *, temperature: float = 0.7, max_tokens: int = 256,
                     system: str | None = None, timeout: float = 60.0, refresh_s: float = 0.05):
            self.url, self.model, self.timeout, self.refresh_s = url, model, timeout, refresh_s
            self.messages: list[dict] = [{"role": "system", "content": system}] if system else []  # answered turns
            self.turns: list[dict] = list(self.messages)   # what is shown: failed turns and notes too
            self.error: str | None = None                   # the last request's error, None after a good one
            self.thread: threading.Thread | None = None     # the answer being streamed for a click, if any
            self._stream: ChatStream | None = None
            self._handles = []
            self.view = w.HTML(transcript_html(self.turns),
                               layout=w.Layout(max_height="420px", overflow="auto", border="1px solid #ddd"))
            self.status = w.HTML()
            self.text = w.Text(placeholder="Ask something — Enter sends", continuous_update=False,
                               layout=w.Layout(flex="1"))
            self.send_button = w.Button(description="Send", button_style="primary")
            self.stop_button = w.Button(description="Stop", disabled=True)
            label = {"style": {"description_width": "initial"}, "layout": w.Layout(width="180px")}
            self.temperature = w.BoundedFloatText(value=temperature, min=0, max=2, step=0.1, description="temperature",
                                                  **label)
            self.max_tokens = w.BoundedIntText(value=max_tokens, min=1, max=100_000, description="max tokens", **label)
            super().__init__([self.view, self.status, w.HBox([self.text, self.send_button, self.stop_button]),
                              w.HBox([self.temperature, self.max_tokens])])
            self.text.observe(self._on_enter, names="value")
            self.send_button.on_click(lambda _: self._start(self.text.value))
            self.stop_button.on_click(lambda _: self.stop())

        # -------- what code calls
        def send(self, question: str) -> str | None:
            """Ask ``question`` with the conversation so far and stream the answer into the box, here (synchronous:
            a notebook run's report gets the transcript). Returns the answer, or None after an error (shown)."""
            if self.thread is not None and self.thread.is_alive():
                raise RuntimeError("an answer is still streaming: wait for it or press Stop")
            return self._answer(question)

        def stop(self) -> None:
            """End the answer being streamed (the connection closes; the server frees its row)."""
            if self._stream is not None:
                self._stream.stop()

        def html(self) -> str:
            """The conversation as static HTML (what reports show)."""
            return transcript_html(self.turns, f"chat with {self.model}")

        # -------- how it works
        def _on_enter(self, change):
            if change["new"]:
                self._start(change["new"])

        def _start(self, question: str) -> None:
            """A click or Enter: stream in a background thread. The handler runs on the kernel's shell thread; held
            there for the whole answer, the kernel could not take the Stop click (a message on the same channel)
            nor run other cells. Widget updates from the thread go out on the kernel's IOPub thread."""
            if not question.strip() or (self.thread is not None and self.thread.is_alive()):
                return
            self.thread = threading.Thread(target=self._answer, args=(question,), daemon=True,
                                           name="kit-chat-widget")
            self.thread.start()

        def _answer(self, question: str) -> str | None:
            question = question.strip()
            self.text.value = ""
            self.send_button.disabled, self.stop_button.disabled = True, False
            self.status.value = ""
            asked = {"role": "user", "content": question}
            reply = {"role": "assistant", "content": ""}
            self.turns += [asked, reply]
            self._stream = ChatStream(self.url, self.model, self.messages + [asked],
                                      temperature=float(self.temperature.value),
                                      max_tokens=int(self.max_tokens.value), timeout=self.timeout)
            shown = 0.0
            try:
                for piece in self._stream:
                    reply["content"] += piece
                    if time.monotonic() - shown >= self.refresh_s:   # at most ~20 redraws a second
                        self.view.value, shown = self.html(), time.monotonic()
            except ChatError as e:
                self.error = str(e)
                reply["error"] = self.error   # the failed turn stays on screen, out of the conversation
                self.status.value = f"<span style='color:#8a1c1c'>{html.escape(self.error)}</span>"
                answer = None
            else:
                self.error = None
                answer = reply["content"]
                self.messages += [asked, {"role": "assistant", "content": answer}]
                note = {"length": "stopped at max_tokens", "stopped": "stopped"}.get(self._stream.finish_reason)
                if note or not answer:
                    reply["note"] = note or "empty answer"
            finally:
                self._stream = None
                self.send_button.disabled, self.stop_button.disabled = False, True
            self.view.value = self.html()
            self._update_static()
            return answer

        # -------- the static copy for reports
        def _bundle(self) -> dict:
            return {**self._repr_mimebundle_(), "text/html": self.html(),
                    "text/plain": f"<chat with {self.model}: {len(self.turns)} messages>"}

        def _ipython_display_(self):
            """Displayed, the widget carries the transcript as static HTML too (HTML reports keep that and drop
            the widget view); each answer sent updates it in every place the box was displayed."""
            from IPython.display import display
            handle = display(self._bundle(), raw=True, display_id=True)
            if handle is not None:
                self._handles.append(handle)

        def _update_static(self) -> None:
            if self._handles:
                bundle = self._bundle()
                for h in self._handles:
                    h.update(bundle, raw=True)

    _BOX = ChatBox
    return ChatBox


def __getattr__(name):   # ``from kit.viz.chat import ChatBox``
    if name == "ChatBox":
        return _box_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def chat_widget(url: str, model: str, *, temperature: float = 0.7, max_tokens: int = 256, system: str | None = None,
                timeout: float = 60.0, show: bool = True):
    """A chat box that talks to the OpenAI-compatible server at ``url`` (base URL, without ``/v1``) about ``model``:
    type a question and press Enter or Send; the answer streams in (Stop ends it); each request carries the whole
    conversation. (The text box sends when its value changes: Enter, leaving it with text in it, or code setting
    ``box.text.value``.) A click streams in a background thread, so the kernel stays free and Stop works.
    ``show``: display it now (with its static transcript for reports). Returns the :class:`ChatBox`;
    ``box.send(question)`` asks from code and waits for the answer.
    """
    box = _box_class()(url, model, temperature=temperature, max_tokens=max_tokens, system=system, timeout=timeout)
    if show:
        from IPython.display import display
        display(box)
    return box
