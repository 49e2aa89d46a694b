"""Test of proportional hazards from scaled Schoenfeld residuals (Grambsch & Therneau, 1994).

For each covariate ``j`` the test regresses the scaled Schoenfeld residuals
``r*_k = D * s_k V`` (``s_k`` the Schoenfeld residual of event ``k``, ``D`` the number of
events, ``V`` the model-based covariance) on a transform ``g`` of the event times:

``T_j = (sum_k (g_k - mean g) r*_kj)^2 / (D V_jj sum_k (g_k - mean g)^2)``, chi-square with 1 df.

The global test is ``D (g - mean g)' S V S' (g - mean g) / sum_k (g_k - mean g)^2`` with ``p``
df. This is the approximation R's ``cox.zph`` used before survival 3.0 and what lifelines'
``proportional_hazard_test`` computes; the per-covariate statistics equal lifelines' for every
transform (for ``"rank"`` in unstratified models; see :func:`proportional_hazards_test`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import chi2

from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.survival.cox_result import CoxResult
from clinnova_explore.analysis.survival.cox_stats import FloatArray, schoenfeld_residuals
from clinnova_explore.analysis.survival.km import kaplan_meier

__all__ = ["TRANSFORMS", "PHTestResult", "proportional_hazards_test"]

Transform = Literal["rank", "km", "identity", "log"]
TRANSFORMS: tuple[str, ...] = ("rank", "km", "identity", "log")


@dataclass(frozen=True)
class PHTestResult:
    """Result of the proportional-hazards test.

    Attributes
    ----------
    summary
        Indexed by covariate: ``test_statistic``, ``df`` (1) and ``p``.
    global_statistic, global_df, global_p
        Joint test over all covariates (chi-square with ``p`` df).
    transform
        The time transform used.
    residuals
        Scaled Schoenfeld residuals (one row per event, columns = covariates) with the event
        ``time`` and transformed time ``g``; for plotting ``beta(t)``.
    provenance
        How the result was made.
    """

    summary: pd.DataFrame
    global_statistic: float
    global_df: int
    global_p: float
    transform: str
    residuals: pd.DataFrame
    provenance: Provenance | None = None

    def _repr_html_(self) -> str:
        head = (
            f"<h4>Proportional hazards test ({html.escape(self.transform)} time)</h4>"
            f"<p>global chi-square = {self.global_statistic:.4g} on {self.global_df} df, "
            f"p = {self.global_p:.4g}</p>"
        )
        return head + self.summary.to_html(float_format=lambda v: f"{v:.4g}")


def _events(fit: CoxResult) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Event times, Schoenfeld residuals and all rows' (time, event, weight) of a fit."""
    if fit.inputs is None:
        raise ValueError(
            "this Cox result carries no data (e.g. a federated fit); the proportional-hazards "
            "test needs the rows: run it where the data are (at a site or on pooled data)"
        )
    beta = fit.summary["coef"].to_numpy()
    times, order, resid = [], [], []
    all_t, all_e, all_w = [], [], []
    offset = 0
    for block in fit.inputs.blocks:
        size = 0
        for st in block.strata.values():
            times.append(st.time[st.event_rows])
            order.append(offset + st.index[st.event_rows])
            resid.append(schoenfeld_residuals(beta, st, fit.ties))
            event = np.zeros(len(st.time))
            event[st.event_rows] = 1.0
            all_t.append(st.time)
            all_e.append(event)
            all_w.append(np.ones(len(st.time)) if st.weights is None else st.weights)
            size += len(st.time)
        offset += size
    t, o = np.concatenate(times), np.concatenate(order)
    # events in time order, ties in input row order (as lifelines)
    sort = np.lexsort((o, t))
    km_data = np.stack([np.concatenate(all_t), np.concatenate(all_e), np.concatenate(all_w)])
    return t[sort], np.concatenate(resid)[sort], km_data


def _transform(name: str, t: FloatArray, km_data: FloatArray) -> FloatArray:
    if name == "identity":
        return t
    if name == "log":
        return np.log(t)
    if name == "rank":
        return np.arange(1.0, len(t) + 1.0)
    frame = pd.DataFrame({"t": km_data[0], "e": km_data[1], "w": km_data[2]})
    curve = kaplan_meier(frame, duration="t", event="e", weights="w").summary
    pos = np.searchsorted(curve["time"].to_numpy(), t, side="right") - 1
    return 1.0 - curve["survival"].to_numpy()[pos]


def proportional_hazards_test(fit: CoxResult, transform: Transform = "rank") -> PHTestResult:
    """Grambsch-Therneau test of proportional hazards for each covariate and globally.

    Parameters
    ----------
    fit
        A Cox fit with its data at hand (:func:`~.cox.cox`, not a federated result).
    transform
        Time scale on which the residuals are regressed: ``"rank"`` (ranks ``1..D`` of the
        event times, ties in input row order, as lifelines' default), ``"km"``
        (``1 - KM(t)`` over all rows, R's default), ``"identity"`` or ``"log"``. lifelines'
        ``"rank"`` on a stratified fit numbers events stratum by stratum; here ranks are over
        all events by time.

    Returns
    -------
    PHTestResult
        Per-covariate and global chi-square statistics with p-values. The model-based
        covariance is used even when ``fit`` reports robust standard errors.

    Examples
    --------
    >>> from lifelines.datasets import load_rossi
    >>> from clinnova_explore.analysis.survival.cox import cox
    >>> fit = cox(load_rossi(), duration="week", event="arrest", covariates=["age", "prio"])
    >>> proportional_hazards_test(fit).summary.round(3)  # doctest: +NORMALIZE_WHITESPACE
               test_statistic  df      p
    covariate
    age                 6.597   1  0.010
    prio                0.882   1  0.348
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    t, s, km_data = _events(fit)
    assert fit.inputs is not None
    if len(t) < 2:
        raise ValueError("the proportional-hazards test needs at least 2 events")
    v = fit.inputs.information_inverse
    d = float(len(t))
    g = _transform(transform, t, km_data)
    gc = g - g.mean()
    ss = float(gc @ gc)
    u = gc @ s  # sum_k (g_k - mean g) s_k
    stat = d * (u @ v) ** 2 / (np.diag(v) * ss)
    global_stat = float(d * (u @ v @ u) / ss)
    names = fit.summary.index
    summary = pd.DataFrame(
        {"test_statistic": stat, "df": 1, "p": chi2.sf(stat, 1)}, index=names.copy()
    )
    resid = pd.DataFrame(d * s @ v, columns=list(names))
    resid.insert(0, "g", g)
    resid.insert(0, "time", t)
    p = len(names)
    return PHTestResult(
        summary=summary,
        global_statistic=global_stat,
        global_df=p,
        global_p=float(chi2.sf(global_stat, p)),
        transform=transform,
        residuals=resid,
    )
