"""LaTeX maths in markdown → MathML, when a report is built (offline: no MathJax, no CDN).

The notebooks keep JupyterLab's syntax (``$…$`` inline, ``$$…$$`` display, ``\\begin{…}…\\end{…}``);
:func:`protect` swaps each formula for a placeholder before nbconvert renders the markdown (so ``*``, ``_``
or ``|`` inside a formula cannot turn into emphasis or table cells), and :func:`restore` puts the MathML
(``latex2mathml``; Chromium, Firefox and Safari render MathML Core natively) in its place afterwards.
Code spans and fenced code are left alone, and so is ``\\$`` (a literal dollar sign).
"""
from __future__ import annotations

import html
import re

TOKEN = "KITMATH{:05d}Q"
_TOKEN_RE = re.compile(r"KITMATH(\d{5})Q")
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
# inside one line of prose: code spans, display maths, inline maths, environments, an escaped dollar
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+).+?(?P=ticks))"
    r"|(?P<esc>\\\$)"
    r"|\$\$(?P<display>.+?)\$\$"
    r"|(?P<env>\\begin\{(?P<envname>[a-zA-Z*]+)\}.+?\\end\{(?P=envname)\})"
    r"|\$(?P<inline>[^$\s](?:[^$]*?[^$\s\\])?)\$(?!\d)",
    re.S)


def split_math(md: str) -> list[tuple[str, str]]:
    """``md`` as segments ``("text", s)``, ``("inline", tex)`` and ``("display", tex)``.

    Math may span lines but not a blank line (a paragraph break), as in JupyterLab; fenced code blocks
    and code spans are text.
    """
    out: list[tuple[str, str]] = []
    for block, is_code in _blocks(md):
        if is_code:
            out.append(("text", block))
            continue
        for para in re.split(r"(\n[ \t]*\n)", block):
            pos = 0
            for m in _INLINE.finditer(para):
                if m.group("code") or m.group("esc"):
                    continue
                out.append(("text", para[pos:m.start()]))
                if m.group("display") is not None:
                    out.append(("display", m.group("display")))
                elif m.group("env") is not None:
                    out.append(("display", m.group("env")))
                else:
                    out.append(("inline", m.group("inline")))
                pos = m.end()
            out.append(("text", para[pos:]))
    merged: list[tuple[str, str]] = []
    for kind, s in out:
        if kind == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + s)
        elif kind != "text" or s:
            merged.append((kind, s))
    return merged


def _blocks(md: str):
    """(chunk, is_fenced_code) pieces of ``md``."""
    lines, buf, fence = md.splitlines(keepends=True), [], None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            if buf:
                yield "".join(buf), False
            buf, fence = [line], m.group(2)[0] * len(m.group(2))
        elif fence is not None and line.strip().startswith(fence):
            buf.append(line)
            yield "".join(buf), True
            buf, fence = [], None
        else:
            buf.append(line)
    if buf:
        yield "".join(buf), fence is not None


_TEXT_ESCAPES = re.compile(r"\\([_%$&#{}])")


_ALIGNED = re.compile(r"^\s*\\begin\{(aligned|align\*?|gathered|gather\*?|split|eqnarray\*?)\}(.*)\\end\{\1\}\s*$", re.S)
_ROW_BREAK = re.compile(r"\\\\(?:\[[^\]]*\])?")
_CELL_BREAK = re.compile(r"(?<!\\)&")


def _aligned(env: str, body: str) -> str:
    """``aligned``-like environments as an ``<mtable>`` (latex2mathml reads their ``&`` as a letter): rows at
    ``\\``, cells at ``&``, each cell converted alone; columns alternate right / left as in LaTeX (MathML Core
    aligns cells with CSS)."""
    from latex2mathml.converter import convert
    rows = []
    for row in _ROW_BREAK.split(body):
        if not row.strip():
            continue
        cells = []
        for j, cell in enumerate(_CELL_BREAK.split(row)):
            inner = convert(cell.strip()) if cell.strip() else "<math></math>"
            inner = re.sub(r"^<math[^>]*>|</math>$", "", inner)
            align = "center" if env.startswith("gather") else ("right" if j % 2 == 0 else "left")
            pad = "padding:0.15em 0 0.15em " + ("1.5em" if j and j % 2 == 0 else "0")
            cells.append(f'<mtd style="text-align:{align};{pad}">{inner}</mtd>')
        rows.append(f"<mtr>{''.join(cells)}</mtr>")
    return f'<math display="block"><mtable>{"".join(rows)}</mtable></math>'


def to_mathml(tex: str, display: bool = False) -> str:
    """One formula as a ``<math>`` element; a formula latex2mathml cannot read stays as its source,
    marked ``class="tex-error"`` (visible, never a crash)."""
    from latex2mathml.converter import convert
    try:
        env = _ALIGNED.match(tex)
        mathml = (_aligned(env.group(1), env.group(2)) if env else
                  convert(tex.strip(), display="block" if display else "inline"))
    except Exception:  # noqa: BLE001 - one bad formula must not lose the report
        src = html.escape(("$$" if display else "$") + tex + ("$$" if display else "$"))
        return f'<code class="tex-error" title="formula not converted">{src}</code>'
    # \text{prompt\_len}: latex2mathml keeps the backslash of escaped characters inside text
    mathml = re.sub(r">([^<]*)<", lambda m: ">" + _TEXT_ESCAPES.sub(r"\1", m.group(1)) + "<", mathml)
    return mathml.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")


class MathStore:
    """Placeholders → MathML for one page."""

    def __init__(self):
        self.items: list[tuple[str, bool]] = []

    def protect(self, md: str) -> str:
        """``md`` with each formula replaced by a placeholder token (display maths on its own line)."""
        parts = []
        for kind, s in split_math(md):
            if kind == "text":
                parts.append(s)
                continue
            parts.append(TOKEN.format(len(self.items)))
            self.items.append((s, kind == "display"))
        return "".join(parts)

    def restore(self, page: str) -> str:
        """Put MathML where the tokens are in text; in attributes (e.g. a heading's anchor id) the token
        becomes the formula's letters."""
        def text(m):
            tex, display = self.items[int(m.group(1))]
            return to_mathml(tex, display)

        def attr(m):
            tex, _ = self.items[int(m.group(1))]
            return re.sub(r"[^A-Za-z0-9]+", "", tex)[:20] or "math"

        pieces = re.split(r"(<[^>]*>)", page)
        return "".join(_TOKEN_RE.sub(attr if p.startswith("<") else text, p) for p in pieces)
