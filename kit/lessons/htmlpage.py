"""The one way kit's own pages (the report index, comparison pages, the grade book) write HTML: text is escaped
by :func:`esc` unless it is :class:`Markup` (HTML already made by these helpers), cells and tables come from
:func:`td`, :func:`tr` and :func:`table`, and every page from :func:`page` (offline: nothing loaded from outside).

Notebook pages are nbconvert's (:mod:`kit.lessons.report_page`), with kit's blocks inserted as Markup."""
from __future__ import annotations

import html as _html

VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f4f4f4;cursor:pointer;user-select:none}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}td[data-v]{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:green}.failed{color:#b00}.note{color:#666}code{background:#f4f4f4;padding:1px 4px}"""

MARK_STYLE = ".mark{font-weight:700}.mark.yes{color:#2a8a3e}.mark.no{color:#c0392b}.mark.none{color:#888}"

# Click a column header of a table.sortable to sort (numbers numerically, again to reverse).
SORT_JS = """<script>
document.querySelectorAll("table.sortable th").forEach((th, i) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], asc = th.dataset.dir !== "asc";
  th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.dir);
  th.dataset.dir = asc ? "asc" : "desc";
  const val = tr => { const c = tr.cells[i]; return c && c.dataset.v !== undefined ? parseFloat(c.dataset.v) : (c ? c.textContent.trim() : ""); };
  [...body.rows].sort((a, b) => {
    const x = val(a), y = val(b);
    const r = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return asc ? r : -r;
  }).forEach(r => body.appendChild(r));
}));
</script>"""


class Markup(str):
    """HTML made by these helpers: put into a page as it is, never escaped again."""
    __slots__ = ()

    def __add__(self, other):
        return Markup(str.__add__(self, esc(other)))


def esc(text) -> Markup:
    """``text`` for HTML (``&<>"'`` escaped); Markup as it is; ``None`` as nothing."""
    if isinstance(text, Markup):
        return text
    return Markup("" if text is None else _html.escape(str(text)))


def join(parts, sep: str = "") -> Markup:
    """Parts (each escaped unless Markup) joined by ``sep`` (escaped too)."""
    return Markup(str(esc(sep)).join(esc(p) for p in parts))


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fmt(v) -> str:
    """A value in a table: floats to 4 significant digits, the rest as ``str``."""
    if is_number(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return str(v)


def link(href: str | None, text) -> Markup:
    """``text`` linked to ``href``; just the text where there is no address."""
    return Markup(f'<a href="{esc(href)}">{esc(text)}</a>') if href else esc(text)


def td(v, cls: str = "", title: str | None = None) -> Markup:
    """A table cell: Markup as it is, ``None`` empty, a value formatted (:func:`fmt`) and escaped; a number also
    carries its exact value (``data-v``) for sorting; ``title``: shown on hover."""
    sort = f' data-v="{esc(repr(v))}"' if is_number(v) else ""
    klass = f" class='{esc(cls)}'" if cls else ""
    tip = f" title='{esc(title)}'" if title is not None else ""
    body = v if isinstance(v, Markup) else esc(fmt(v)) if v is not None else ""
    return Markup(f"<td{klass}{tip}{sort}>{body}</td>")


def th(text, title: str | None = None) -> Markup:
    tip = f" title='{esc(title)}'" if title else ""
    return Markup(f"<th{tip}>{esc(text)}</th>")


def tr(*cells) -> Markup:
    """A row of cells made by :func:`td` / :func:`th` (any other value becomes a :func:`td`)."""
    return Markup("<tr>" + "".join(c if isinstance(c, Markup) else td(c) for c in cells) + "</tr>")


def table(columns, rows, cls: str = "sortable", id: str | None = None) -> Markup:
    """A table with a header row (column names, or :func:`th` cells) and a body of :func:`tr` rows;
    ``sortable``: click a column to sort it (:data:`SORT_JS`, which :func:`page` includes)."""
    head = "".join(c if isinstance(c, Markup) else th(c) for c in columns)
    attrs = (f" class='{esc(cls)}'" if cls else "") + (f" id='{esc(id)}'" if id else "")
    return Markup(f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def mark(ok: bool | None) -> Markup:
    """✓ (bar met), ✗ (missed) or — (not judged), styled by :data:`MARK_STYLE`."""
    if ok is True:
        return Markup('<span class="mark yes" title="bar met">✓</span>')
    if ok is False:
        return Markup('<span class="mark no" title="bar missed">✗</span>')
    return Markup('<span class="mark none" title="not judged">—</span>')


def page(title: str, body, style: str = "", head="", base_style: str = STYLE, sortable: bool = True) -> str:
    """A whole page: ``title`` as its title and heading, ``body`` (Markup, or text to escape), ``base_style``
    (kit's) plus ``style``, ``head`` (Markup: scripts) and, where ``sortable``, the table sorter (:data:`SORT_JS`)."""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8">{VIEWPORT}<title>{esc(title)}</title>\n'
            f"<style>{base_style}{style}</style>{esc(head)}</head><body><h1>{esc(title)}</h1>\n"
            f"{esc(body)}\n{SORT_JS if sortable else ''}</body></html>")
