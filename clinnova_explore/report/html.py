"""Self-contained HTML pages: sections of text, tables and bokeh plots, offline.

The page embeds BokehJS inline (:data:`bokeh.resources.INLINE`), its styles are written here with
system fonts only, and nothing refers to a network resource, so the file opens offline.
:func:`external_references` lists anything in a page that would be fetched from elsewhere (it
should find nothing in what :func:`render_page` writes).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bokeh.model import Model

__all__ = [
    "Section",
    "esc",
    "external_references",
    "key_value_table",
    "notice",
    "render_page",
    "table_html",
]

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial,
       sans-serif; color: #1f2933; margin: 0 auto; max-width: 1100px; padding: 1.5em 2em 4em;
       height: auto; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em;
     margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
p.subtitle { color: #52606d; margin-top: 0; }
nav.toc a { margin-right: 1em; }
table.report { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
table.report th, table.report td { border-bottom: 1px solid #e4e7eb; padding: 0.25em 0.7em;
                                   text-align: right; vertical-align: top; }
table.report th { background: #f5f7fa; }
table.report th:first-child, table.report td:first-child { text-align: left; }
table.report.keys th { text-align: left; width: 14em; }
table.report.keys td { text-align: left; }
div.plot { margin: 0.8em 0; }
div.notice { background: #fff8e1; border-left: 4px solid #f0b429; padding: 0.4em 0.8em;
             margin: 0.6em 0; }
div.notice.error { background: #fdecea; border-left-color: #d64545; }
code { font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace;
       font-size: 0.9em; }
"""

_BODY = """
<header><h1>{{ title }}</h1>{{ subtitle }}</header>
<nav class="toc">{% for s in sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in sections %}
<section id="{{ s.id }}"><h2>{{ s.title }}</h2>
{{ s.body }}
{% for p in s.plots %}<div class="plot plot-{{ s.id }}">{{ embed(roots[p]) }}</div>{% endfor %}
{{ s.after }}
</section>
{% endfor %}
"""

_WITH_BOKEH = (
    "{% extends base %}\n{% from macros import embed %}\n"
    "{% block postamble %}<style>{{ css }}</style>{% endblock %}\n"
    "{% block contents %}" + _BODY + "{% endblock %}"
)

_PLAIN = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    "<title>{{ title }}</title><style>{{ css }}</style></head><body>"
    + _BODY.replace("{{ embed(roots[p]) }}", "")
    + "</body></html>"
)


@dataclass(frozen=True)
class Section:
    """One section of a report page.

    Parameters
    ----------
    id
        Anchor id (letters, digits, ``-``); also the CSS class ``plot-<id>`` of its plots.
    title
        Heading text (escaped when rendered).
    body
        HTML before the plots; built with this module's helpers, which escape every value.
    plots
        Bokeh models shown after ``body``, in order.
    after
        HTML after the plots.
    """

    id: str
    title: str
    body: str = ""
    plots: tuple[Model, ...] = ()
    after: str = ""


def esc(value: object) -> str:
    """``value`` as HTML-escaped text."""
    return html.escape(str(value))


def notice(text: str, *, kind: str = "note") -> str:
    """A highlighted note (``kind="error"`` for something that could not be shown)."""
    return f"<div class='notice {esc(kind)}'>{esc(text)}</div>"


def key_value_table(rows: Sequence[tuple[str, str]], *, escape: bool = True) -> str:
    """A two-column table of labels and values (values escaped unless ``escape=False``)."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v) if escape else v}</td></tr>" for k, v in rows)
    return f"<table class='report keys'>{body}</table>"


def _number(value: object, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{int(value):,}"
    return str(value)


def table_html(
    df: pd.DataFrame,
    *,
    index: bool = True,
    digits: int = 3,
    formatters: dict[str, Callable[[Any], str]] | None = None,
    caption: str = "",
) -> str:
    """A DataFrame as an escaped HTML table (class ``report``); missing values show ``—``.

    Parameters
    ----------
    df
        The table; a MultiIndex on rows or columns is flattened with `` / ``.
    index
        Show the row index as the first column(s).
    digits
        Significant digits of floats (values of 1,000 and more show as whole numbers).
    formatters
        ``{column: function}`` overriding the default formatting of a column.
    caption
        Text above the table.
    """
    frame = df.reset_index() if index else df
    columns = [
        " / ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c)
        for c in frame.columns
    ]
    chosen = formatters or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    rows = []
    for values in frame.itertuples(index=False, name=None):
        cells = []
        for name, value in zip(columns, values, strict=True):
            shown = chosen[name](value) if name in chosen else _number(value, digits)
            cells.append(f"<td>{esc(shown)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        f"<table class='report'>{cap}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_page(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """A complete self-contained HTML page.

    Parameters
    ----------
    title
        Page title and heading.
    sections
        The sections in order; their plots are embedded with BokehJS inline (each plot's
        ``name`` is set to ``<section id>-<i>`` to place it).
    subtitle
        A line under the title.

    Returns
    -------
    str
        The HTML document.
    """
    names: list[list[str]] = []
    models: list[Model] = []
    for s in sections:
        names.append([])
        for i, model in enumerate(s.plots):
            model.name = f"{s.id}-{i}"
            names[-1].append(model.name)
            models.append(model)
    context = {
        "css": CSS,
        "title": esc(title),
        "subtitle": f"<p class='subtitle'>{esc(subtitle)}</p>" if subtitle else "",
        "sections": [
            {"id": esc(s.id), "title": esc(s.title), "body": s.body, "plots": n, "after": s.after}
            for s, n in zip(sections, names, strict=True)
        ],
    }
    if not models:
        return jinja2.Template(_PLAIN).render(**context)
    return _embed(models, title, jinja2.Template(_WITH_BOKEH), context)


def _declared(models: Iterable[Model], attr: str) -> set[str]:
    """The external files the classes of ``models`` declare (``__javascript__``/``__css__``)."""
    found: set[str] = set()
    for cls in {type(m) for m in models}:
        value = getattr(cls, attr, None)
        found |= {value} if isinstance(value, str) else set(value or ())
    return found


def _embed(models: list[Model], title: str, template: jinja2.Template, context: Any) -> str:
    """:func:`bokeh.embed.file_html` with INLINE resources, minus other libraries' files.

    Bokeh adds the external files of every *registered* model class to every page (e.g.
    Panel's module shims once Panel is imported, whether or not a Panel model is shown); a
    file is kept only if a model on this page declares it, and then the page cannot be
    offline, which is an error.
    """
    from bokeh.embed.bundle import Bundle, bundle_for_objs_and_resources
    from bokeh.embed.elements import html_page_for_render_items
    from bokeh.embed.util import OutputDocumentFor, standalone_docs_json_and_render_items
    from bokeh.resources import INLINE

    with OutputDocumentFor(models, always_new=True) as doc:
        docs_json, render_items = standalone_docs_json_and_render_items(models)
        full = bundle_for_objs_and_resources([doc], INLINE)
        needed_js = _declared(doc.models, "__javascript__")
        needed_css = _declared(doc.models, "__css__")
        js = [f for f in full.js_files if str(f) in needed_js]
        css = [f for f in full.css_files if str(f) in needed_css]
        if js or css:
            raise ValueError(
                "a plot of this report needs external files and cannot be embedded offline: "
                + ", ".join(map(str, [*js, *css]))
            )
        bundle = Bundle([], full.js_raw, [], full.css_raw, full.hashes)
        return html_page_for_render_items(
            bundle,
            docs_json,
            render_items,
            title=title,
            template=template,
            template_variables=context,
        )


_URL_ATTRIBUTES = {"src", "href", "srcset", "action", "data", "poster", "xlink:href", "background"}
_CSS_URL = re.compile(r"url\(\s*['\"]?(?!data:|#)([^'\")\s]+)|@import\s+[^;]+", re.IGNORECASE)
_HTTP = re.compile(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", re.IGNORECASE)


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in: list[tuple[str, str]] = []  # (tag, script type) of open script/style tags

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in _URL_ATTRIBUTES and not value.startswith(("#", "data:")):
                self.found.append(f"<{tag} {name}={value}>")
            elif name == "style":
                self.found += [m.group(0) for m in _CSS_URL.finditer(value)]
        if tag == "link":
            self.found.append(f"<link {dict(attrs)}>")
        if tag in ("script", "style"):
            self._in.append((tag, (dict(attrs).get("type") or "").lower()))

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1][0] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        tag, kind = self._in[-1] if self._in else ("", "")
        if tag == "style":
            self.found += [m.group(0) for m in _CSS_URL.finditer(data)]
        elif tag == "script" and kind != "application/json":
            return  # library code (BokehJS) mentions URLs in comments and messages
        else:
            self.found += _HTTP.findall(data)


def external_references(document: str) -> list[str]:
    """What in an HTML page would be fetched from, or points to, another place.

    Finds ``src``/``href``-like attributes that are not ``#fragment`` or ``data:`` URLs,
    ``<link>`` tags, CSS ``url(...)`` and ``@import``, and any ``http(s)://`` or ``//host``
    URL in the page's text, attributes' text and embedded JSON data. The inline JavaScript
    library code is not searched for URL-like strings (it holds some in comments); it cannot
    load anything by itself without one of the references above.

    Parameters
    ----------
    document
        The HTML text.

    Returns
    -------
    list[str]
        The offending fragments, in order (empty for a self-contained page).
    """
    parser = _References()
    parser.feed(document)
    parser.close()
    return parser.found
