"""Build notebooks/NN_name.ipynb from notebooks/src/NN_name.py, written in jupytext's percent format.

A cell starts at a line ``# %%`` (code) or ``# %% [markdown]``, optionally followed by JSON metadata as jupytext
writes it: ``# %% tags=["parameters"]``, ``# %% [markdown] id="c03"``. Every line of a markdown cell is a comment
(``# text``; an empty line is ``#``), so a source is valid Python that ruff and ``ast`` read. ``id`` is the cell's
id in the notebook (markdown cells carry theirs, so they stay addressable when cells move); a cell without one gets
``c`` + its position (``c00``, ``c01``, …); ``tags`` and any other key go to the cell's metadata. jupytext itself
is not needed: this small parser reads the subset the sources use.

Usage: python tools/nbbuild.py [NN_name ...]   (no arguments: all). The .py source is what developers edit;
tests/test_notebooks.py checks that each committed notebook matches its source.
"""
import json
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
HEADER = re.compile(r"^# %%(?: \[(markdown|md)\])?((?: .*)?)$", flags=re.M)
KEY = re.compile(r"\s*([A-Za-z_][\w.-]*)=")


def cell_metadata(text: str, where: str) -> dict:
    """``key=<JSON> key=<JSON> …`` after a cell marker, as jupytext writes it."""
    meta, i, decoder = {}, 0, json.JSONDecoder()
    while i < len(text):
        m = KEY.match(text, i)
        if not m:
            if text[i:].strip():
                raise ValueError(f"{where}: cannot read cell metadata {text[i:].strip()!r} (want key=<JSON value>)")
            break
        try:
            meta[m.group(1)], i = decoder.raw_decode(text, m.end())
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: the value of {m.group(1)!r} is not JSON: {e}") from None
    return meta


def unprefix(md: str, where: str) -> str:
    """Markdown lines in a source are written as comments ('# text', '#' for an empty line); strip that prefix."""
    lines = md.split("\n")
    for line in lines:
        if line and not line.startswith("#"):
            raise ValueError(f"{where}: markdown line not written as a comment: {line!r}")
    return "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in lines)


def build(src: Path):
    text = src.read_text()
    parts = HEADER.split(text)
    if parts[0].strip():
        raise ValueError(f"{src}: text before the first '# %%' cell marker")
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    ids = set()
    for i in range(1, len(parts), 3):
        where = f"{src.name}, cell {len(nb.cells)}"
        markdown, meta, body = parts[i] is not None, cell_metadata(parts[i + 1], where), parts[i + 2].strip("\n")
        cell = new_markdown_cell(unprefix(body, where)) if markdown else new_code_cell(body)
        cell.id = meta.pop("id", f"c{len(nb.cells):02d}")
        if cell.id in ids:
            raise ValueError(f"{where}: cell id {cell.id!r} used twice (give the new cell its own id=\"…\")")
        ids.add(cell.id)
        tags = meta.pop("tags", [])
        if tags:
            cell.metadata["tags"] = tags
        cell.metadata.update(meta)
        nb.cells.append(cell)
    return nb


def main(names):
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        if names and src.stem not in names:
            continue
        nbformat.write(build(src), str(ROOT / "notebooks" / f"{src.stem}.ipynb"))
        print("built", src.stem)


if __name__ == "__main__":
    main(sys.argv[1:])
