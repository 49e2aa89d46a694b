"""HoloViews builders for treatment pathways: a Sankey diagram of steps."""

from __future__ import annotations

from itertools import pairwise

import holoviews as hv
import holoviews.plotting.bokeh  # registers the bokeh backend that .opts needs
import pandas as pd

__all__ = ["sankey", "sankey_edges"]


def sankey_edges(paths: pd.DataFrame) -> pd.DataFrame:
    """Flows between consecutive steps: ``source`` (``"1. A"``), ``target``, ``persons``.

    Parameters
    ----------
    paths
        One site's frequency table (:meth:`PathwaysResult.paths
        <clinnova_explore.analysis.pathways.PathwaysResult.paths>`); suppressed paths and
        paths without a step are left out. A path's last step flows to ``"<n+1>. end"``
        when it is shorter than the longest path, so every column of the diagram adds up.
    """
    steps = [c for c in paths.columns if c.startswith("step")]
    rows = paths[paths.persons.notna() & paths[steps[0]].notna()] if steps else paths.iloc[:0]
    depth = max((int(r[steps].notna().sum()) for _, r in rows.iterrows()), default=0)
    flows: dict[tuple[str, str], int] = {}
    for _, row in rows.iterrows():
        labels = [row[s] for s in steps if pd.notna(row[s])]
        nodes = [f"{i + 1}. {label}" for i, label in enumerate(labels)]
        if len(nodes) < max(depth, 2):
            nodes.append(f"{len(nodes) + 1}. end")
        for a, b in pairwise(nodes):
            flows[(a, b)] = flows.get((a, b), 0) + int(row.persons)
    return pd.DataFrame(
        [(a, b, n) for (a, b), n in flows.items()], columns=["source", "target", "persons"]
    )


def sankey(paths: pd.DataFrame) -> hv.Sankey:
    """A Sankey diagram of treatment steps (node ``"2. B"`` is treatment B at step 2)."""
    edges = sankey_edges(paths)
    return hv.Sankey(edges, kdims=["source", "target"], vdims=["persons"]).opts(
        responsive=True,
        height=420,
        label_position="right",
        node_color="index",
        edge_color="source",
        cmap="Category20",
        tools=["hover"],
        title="Treatment pathways",
    )
