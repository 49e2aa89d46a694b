"""Shared pieces of the ``tools/make_notebook_*.py`` generators (nbformat, no outputs)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def md(text: str) -> nbformat.NotebookNode:
    """A markdown cell (surrounding blank lines stripped)."""
    return new_markdown_cell(text.strip())


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    """A code cell; ``tags`` let the notebook tests find it."""
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(cells: Sequence[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """A Python 3 notebook of ``cells``, without outputs."""
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    return nb


def write(cells: Sequence[nbformat.NotebookNode], default: Path) -> None:
    """Write the notebook to ``sys.argv[1]`` if given, else to ``default``."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    nbformat.write(notebook(cells), out)
    print(f"wrote {out}")
