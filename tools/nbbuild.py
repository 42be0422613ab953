"""Build notebooks/NN_name.ipynb from notebooks/src/NN_name.py (cells split by '# %% [md]' / '# %% [code] tags').

Usage: python tools/nbbuild.py [NN_name ...]   (no arguments: all). The .py source is what developers edit;
tests/test_notebooks.py checks that each committed notebook matches its source.
"""
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"


def unprefix(md: str) -> str:
    """Markdown lines in a source are written as comments ('# text'); strip that prefix."""
    return "\n".join(line[2:] if line.startswith("# ") else "" if line == "#" else line for line in md.split("\n"))


def build(src: Path):
    parts = re.split(r"^# %% \[(md|code)\](.*)$", src.read_text(), flags=re.M)
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i in range(1, len(parts), 3):
        kind, tags, body = parts[i], parts[i + 1].split(), parts[i + 2].strip("\n")
        cell = new_markdown_cell(unprefix(body)) if kind == "md" else new_code_cell(body)
        cell.id = f"c{len(nb.cells):02d}"
        if tags:
            cell.metadata["tags"] = tags
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
