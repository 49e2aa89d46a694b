"""Covariate balance: standardized mean differences before and after weighting or matching.

The SMD follows :mod:`clinnova_explore.analysis.smd` (Austin 2009): treated minus comparator,
over ``sqrt((v1 + v0) / 2)`` with ``v = p (1 - p)`` for a 0/1 covariate and the sample variance
otherwise. After weighting, means and variances are weighted (Austin & Stuart 2015): the
weighted mean ``sum(w x) / sum(w)`` and the weighted variance
``sum(w (x - mean)^2) / (sum(w) - sum(w^2) / sum(w))``, which is the ordinary ``ddof=1`` variance
when all weights are 1. Matching is weighting with weight 1 for matched and 0 for unmatched
persons.

Everything is computed from per-arm weighted moments (sum of weights, sum of squared weights,
weighted mean, weighted sum of squared deviations), which sites can release and a coordinator can
merge exactly (:func:`combine_arm_moments`), so federated balance equals pooled balance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from clinnova_explore.analysis.effects.propensity import check_treatment
from clinnova_explore.analysis.smd import smd_binary, smd_continuous

__all__ = ["arm_moments", "balance", "balance_from_moments", "combine_arm_moments"]

MOMENT_COLUMNS = ["sum_w", "sum_w2", "mean", "m2"]


def arm_moments(
    data: pd.DataFrame,
    *,
    treatment: str,
    covariates: Sequence[str],
    weights: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Weighted moments per covariate and arm.

    Returns
    -------
    pandas.DataFrame
        Columns ``covariate``, ``arm`` (1 treated, 0 comparator), ``n`` (rows with positive
        weight), ``sum_w``, ``sum_w2``, ``mean``, ``m2`` (weighted sum of squared deviations) and
        ``binary`` (all values 0/1).
    """
    t = check_treatment(data, treatment, both=False)
    w = np.ones(len(data)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(data),):
        raise ValueError(f"got {w.shape} weights for {len(data)} rows")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    rows = []
    for col in covariates:
        if col not in data.columns:
            raise KeyError(f"covariate {col!r} not in data; available: {list(data.columns)}")
        x = data[col].to_numpy(np.float64)
        if np.isnan(x).any():
            raise ValueError(f"covariate {col!r} has missing values; drop or impute them first")
        binary = bool(np.isin(x, (0.0, 1.0)).all())
        for arm in (1, 0):
            sel = t == arm
            ws, xs = w[sel], x[sel]
            sw = float(ws.sum())
            mean = float((ws * xs).sum() / sw) if sw > 0 else float("nan")
            m2 = float((ws * (xs - mean) ** 2).sum()) if sw > 0 else 0.0
            rows.append(
                {
                    "covariate": col,
                    "arm": arm,
                    "n": int((ws > 0).sum()),
                    "sum_w": sw,
                    "sum_w2": float((ws**2).sum()),
                    "mean": mean,
                    "m2": m2,
                    "binary": binary,
                }
            )
    return pd.DataFrame(rows)


def combine_arm_moments(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Merge per-site :func:`arm_moments` tables exactly (same covariates and arms)."""
    data = pd.concat(list(parts), ignore_index=True)
    binary = data.groupby(["covariate", "arm"], sort=False)["binary"].all()
    data = data[data["sum_w"] > 0]
    keys = ["covariate", "arm"]
    grouped = data.groupby(keys, sort=False)
    total = grouped[["n", "sum_w", "sum_w2"]].sum()
    site_mean = data["mean"].to_numpy()
    mean = (data["sum_w"] * data["mean"]).groupby([data[k] for k in keys], sort=False).sum()
    mean = (mean / total["sum_w"]).rename("mean")
    overall = mean.reindex(pd.MultiIndex.from_frame(data[keys])).to_numpy()
    dev = data["m2"] + data["sum_w"] * (site_mean - overall) ** 2
    m2 = dev.groupby([data[k] for k in keys], sort=False).sum().rename("m2")
    out = pd.concat([total, mean, m2], axis=1).reindex(binary.index)
    out["binary"] = binary
    out[["n", "sum_w", "sum_w2", "m2"]] = out[["n", "sum_w", "sum_w2", "m2"]].fillna(0)
    out["n"] = out["n"].astype(np.int64)
    out = out.reset_index()
    return out[["covariate", "arm", "n", *MOMENT_COLUMNS, "binary"]]


def _binary(moments: pd.DataFrame) -> pd.Series:
    """Per covariate: are all its values 0/1 (in both arms)?"""
    return moments.groupby("covariate", sort=False)["binary"].all()


def _arm_stats(moments: pd.DataFrame, binary: pd.Series) -> pd.DataFrame:
    m = moments.set_index(["covariate", "arm"])
    denom = m["sum_w"] - m["sum_w2"] / m["sum_w"]
    variance = (m["m2"] / denom).where(denom > 0)
    b = binary.reindex(m.index.get_level_values("covariate")).to_numpy(bool)
    variance = variance.where(~b, m["mean"] * (1 - m["mean"]))
    return pd.DataFrame({"mean": m["mean"], "var": variance, "binary": b}, index=m.index)


def _smd(stats: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    treated = stats.xs(1, level="arm").reindex(order)
    control = stats.xs(0, level="arm").reindex(order)
    binary = treated["binary"].to_numpy(bool)
    cont = smd_continuous(
        treated["mean"], np.sqrt(treated["var"]), control["mean"], np.sqrt(control["var"])
    )
    smd = np.where(binary, smd_binary(treated["mean"], control["mean"]), cont)
    return pd.DataFrame(
        {
            "treated": treated["mean"].to_numpy(),
            "comparator": control["mean"].to_numpy(),
            "smd": smd,
        },
        index=pd.Index(order, name="covariate"),
    )


def balance_from_moments(before: pd.DataFrame, after: pd.DataFrame | None = None) -> pd.DataFrame:
    """The balance table from (combined) arm moments; see :func:`balance`.

    Whether a covariate is binary (``p (1 - p)`` variance) is decided on ``before``.
    """
    order = list(dict.fromkeys(before["covariate"]))
    binary = _binary(before)
    out = _smd(_arm_stats(before, binary), order).add_suffix("_before")
    kind = np.where(binary.reindex(order).to_numpy(bool), "binary", "continuous")
    out.insert(0, "kind", kind)
    if after is not None:
        out = out.join(_smd(_arm_stats(after, binary), order).add_suffix("_after"))
    return out


def balance(
    data: pd.DataFrame,
    *,
    treatment: str,
    covariates: Sequence[str],
    weights: str | npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Standardized mean differences of ``covariates`` between arms, before and after.

    Parameters
    ----------
    data
        One row per person (all persons, also those a matching left out).
    treatment
        0/1 column (1 = treated/target arm).
    covariates
        Numeric columns.
    weights
        Optional column name or array: IPT weights, or 1/0 for matched/unmatched persons.

    Returns
    -------
    pandas.DataFrame
        Indexed by covariate: ``kind`` (binary/continuous), ``treated_before``,
        ``comparator_before`` (means), ``smd_before``; with ``weights`` also
        ``treated_after``, ``comparator_after``, ``smd_after`` (weighted).

    Examples
    --------
    >>> df = pd.DataFrame({"t": [1, 1, 0, 0], "x": [1.0, 3.0, 0.0, 2.0], "w": [1, 1, 1, 1]})
    >>> balance(df, treatment="t", covariates=["x"], weights="w")[["smd_before", "smd_after"]]
               smd_before  smd_after
    covariate
    x            0.707107   0.707107
    """
    w = data[weights].to_numpy(np.float64) if isinstance(weights, str) else weights
    before = arm_moments(data, treatment=treatment, covariates=covariates)
    if w is None:
        return balance_from_moments(before)
    after = arm_moments(data, treatment=treatment, covariates=covariates, weights=w)
    return balance_from_moments(before, after)
