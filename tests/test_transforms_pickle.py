"""Site transforms cross a process boundary: each is sent by reference through the strict wire.

A runner that ships every request, and the transforms of the site table it runs on, through
:mod:`clinnova_explore.federated.rpc` (the pickles a site process reads, restricted to the
package's own functions) and rebuilds the site from what arrived gives the same treatment
comparison as the plain in-process runner: so nothing a comparison sends to a site is a
closure, and nothing is lost on the way.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest

from clinnova_explore.analysis.contract import InProcessRunner
from clinnova_explore.catalog import DisclosurePolicy
from clinnova_explore.federated import Federation, TableSite, rpc
from clinnova_explore.federated.protocol import SiteRequest, SiteResponse, SiteStatus
from clinnova_explore.report.effects import OUTCOME, _outcome_indicator
from tests.test_effects import simulate
from tests.test_effects_federated import assert_same, run

OPEN = DisclosurePolicy(min_cell_count=1, min_cohort_size=1, max_params_per_obs=0.1)


@dataclass
class WireRunner(InProcessRunner):
    """Each site gets its request and its table's transforms through ``rpc.dumps/loads``."""

    shipped: list[tuple[str, Any]] = field(default_factory=list)

    def exchange(
        self, requests: Mapping[str, tuple[Any, SiteRequest]], *, strict: bool
    ) -> dict[str, SiteResponse | SiteStatus]:
        arrived = {}
        for site_id, (source, request) in requests.items():
            assert isinstance(source, TableSite)
            transforms, request = rpc.loads(rpc.dumps((source.transforms, request)))
            self.shipped += transforms
            rebuilt = TableSite(source.id, source.policy, source.data, tuple(transforms))
            arrived[site_id] = (rebuilt, request)
        return super().exchange(arrived, strict=strict)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    data = simulate(n=900, seed=11)
    # site c is too small for the propensity model: the comparison leaves it out
    data = pd.concat([data[data["site"] != "c"], data[data["site"] == "c"].head(40)])
    return {s: g.drop(columns="site") for s, g in data.groupby("site")}


@pytest.mark.parametrize(
    ("method", "options"),
    [("iptw", {"trim": (0.1, 0.9)}), ("iptw", {}), ("match", {})],
)
def test_a_comparison_over_the_wire_equals_the_in_process_one(
    tables: dict[str, pd.DataFrame], method: str, options: dict[str, object]
) -> None:
    wire = WireRunner()
    over_wire = run(Federation.from_tables(tables, policy=OPEN, runner=wire), method, **options)
    in_process = run(Federation.from_tables(tables, policy=OPEN), method, **options)
    assert_same(over_wire, in_process, rtol=1e-12)
    assert over_wire.provenance is not None and "c" in over_wire.provenance.refused
    functions = {fn.func.__name__ for _, fn in wire.shipped if isinstance(fn, functools.partial)}
    last = "_pair" if method == "match" else ("_weigh" if "trim" in options else "_score")
    assert {"_prepare", "_leave_out", "_score", last} <= functions
    # every transform is a module-level function bound with partial: sent by reference
    for label, fn in wire.shipped:
        assert isinstance(fn, functools.partial), label
        assert fn.func.__module__ == "clinnova_explore.analysis.effects.federated", label
        assert "<locals>" not in fn.func.__qualname__, label


def test_the_report_outcome_indicator_is_sent_by_reference() -> None:
    frame = pd.DataFrame({"event": [0, 1, 2, 1]})
    fn = rpc.loads(rpc.dumps(_outcome_indicator))
    # a partial of the shared site transform: the function by reference, its arguments as data
    assert fn.func is _outcome_indicator.func and fn.keywords == _outcome_indicator.keywords
    assert fn(frame)[OUTCOME].tolist() == [0, 1, 0, 1]


def test_a_closure_cannot_be_sent() -> None:
    """The check above is meaningful: the wire refuses what the transforms used to be."""
    threshold = 1

    def closure(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["event"] >= threshold]

    with pytest.raises(rpc.NotSendableError, match="closures only work in process"):
        rpc.dumps(closure)
    with pytest.raises((pickle.PicklingError, AttributeError), match="local object"):
        pickle.dumps(closure)
