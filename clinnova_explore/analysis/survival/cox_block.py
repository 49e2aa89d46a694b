"""Cox data blocks: rows split into strata, sorted by time, with everything fixed across fits.

A :class:`CoxBlock` is what a site prepares once; the Newton iterations
(:mod:`~clinnova_explore.analysis.survival.cox_stats`) then only recompute what depends on the
coefficients. Rows are sorted by time *descending* within each stratum, so the risk set of a
time is a prefix of the rows: risk-set sums are sums over "risk segments" (the rows joining
the risk set at each event time, one sparse product) accumulated over event times.

The lower-case functions after :func:`make_block` are the array kernels of the fit (segment
sums, chunked BLAS products, reusable scratch arrays); they are internal to this package.
Products run in row chunks of :data:`CHUNK` rows: each BLAS call stays small and in cache,
which on a busy machine beats one long multi-threaded call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

__all__ = ["CoxBlock", "FloatArray", "IntArray", "SortedStratum", "Ties", "make_block"]

Ties = Literal["efron", "breslow"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.integer[Any]]


@dataclass(frozen=True)
class SortedStratum:
    """One stratum sorted by time DESCENDING, with everything that does not depend on ``beta``.

    In descending order the risk set of an event time is a prefix of the rows: the risk
    segments ``0..k`` of event time ``k``.
    """

    time: FloatArray  # sorted descending
    index: IntArray  # position of each row in the block's input
    x: FloatArray  # centred within the stratum, same row order
    n_times: int  # number of distinct event times K (numbered 0 = latest)
    seg_ptr: IntArray  # risk segment k = rows seg_ptr[k]:seg_ptr[k+1]: at risk from time k on
    seg_idx: IntArray  # arange(seg_ptr[-1]) (CSR column indices)
    row_seg: IntArray  # risk segment of each row up to seg_ptr[-1]
    event_rows: IntArray  # rows with an event (CSR column indices of the events' sums)
    event_ptr: IntArray  # events of time k = event_rows[event_ptr[k]:event_ptr[k+1]]
    entry_time: IntArray  # event -> event-time number (0..K-1)
    event_first: IntArray  # position in event_rows of each event time's first event
    frac: FloatArray  # Efron's l / d for each event
    x_event_sum: FloatArray  # (weighted) sum of x over events
    tied: bool  # whether any event time has more than one event
    weights: FloatArray | None  # case weights (None = all 1)
    mean_weight: FloatArray | None  # mean case weight of each event time's events
    cluster: IntArray | None  # block-wide cluster code per row
    work: dict[tuple[int, str], FloatArray] = field(default_factory=dict, repr=False, compare=False)
    # scratch arrays reused across evaluations (fresh large arrays cost page faults)


@dataclass(frozen=True)
class CoxBlock:
    """One block of data (e.g. one site), split into strata and sorted by time.

    Build it with :func:`make_block`; pass it to :func:`block_stats` and :func:`block_meat`.
    ``n_clusters`` is the number of distinct cluster labels (0 without clusters).
    """

    strata: dict[object, SortedStratum]
    n_clusters: int = 0

    def clear_scratch(self) -> None:
        """Free the scratch arrays the fit kept between evaluations (they regrow on use)."""
        for st in self.strata.values():
            st.work.clear()

    @property
    def weighted(self) -> bool:
        """Whether the block carries case weights."""
        return any(s.weights is not None for s in self.strata.values())


def make_block(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    x: npt.ArrayLike,
    strata: npt.ArrayLike | None = None,
    weights: npt.ArrayLike | None = None,
    cluster: npt.ArrayLike | None = None,
) -> CoxBlock:
    """Split a block into strata, sort each by time and centre its covariates.

    Centring a covariate by a constant within a stratum leaves that stratum's partial
    likelihood, score and information unchanged, so each stratum is centred on its own mean
    for numerical stability.

    Parameters
    ----------
    time
        Durations (length ``n``).
    event
        Event indicators (truthy = event observed).
    x
        Design matrix (``n x p``), already numeric (not modified).
    strata
        Stratum label per row, or ``None`` for a single stratum.
    weights
        Positive case weights per row, or ``None`` (all 1).
    cluster
        Cluster label per row for a clustered sandwich variance (:func:`block_meat`), or
        ``None`` (every row its own cluster).

    Returns
    -------
    CoxBlock
        The prepared block.
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event).astype(bool)
    if len(t) == 0:
        return CoxBlock(strata={})
    if not np.isfinite(t).all() or t.min() < 0:
        raise ValueError("durations must be finite and >= 0")
    xm = np.asarray(x, dtype=np.float64).reshape(len(t), -1)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and (w.shape != t.shape or not np.isfinite(w).all() or (w <= 0).any()):
        raise ValueError("case weights must be finite and > 0, one per row")
    codes, n_clusters = None, 0
    if cluster is not None:
        c, uniq = pd.factorize(np.asarray(cluster))
        if (c < 0).any():
            raise ValueError("cluster labels must not be missing")
        codes, n_clusters = c.astype(np.intp), len(uniq)
    if strata is None:
        labels: npt.NDArray[np.int64] = np.zeros(len(t), dtype=np.int64)
        keys: list[object] = [None]
    else:
        lab, uniq = pd.factorize(np.asarray(strata), sort=True)
        if (lab < 0).any():
            raise ValueError("strata labels must not be missing")
        labels, keys = lab.astype(np.int64), list(uniq)
    # group rows by stratum (stable radix sort of small ints), then sort each stratum by time
    # descending; the order within tied times does not matter for the partial likelihood
    if len(keys) > 1:
        by_stratum = np.argsort(
            labels.astype(np.int16 if len(keys) < 2**15 else np.int64), kind="stable"
        )
        sizes = np.bincount(labels, minlength=len(keys))
    else:
        by_stratum, sizes = None, np.array([len(t)])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    order = np.empty(len(t), dtype=np.intp)
    for start, end in pairwise(bounds):
        seg = np.arange(start, end) if by_stratum is None else by_stratum[start:end]
        order[start:end] = seg[np.argsort(-t[seg])]
    xm = np.take(xm, order, axis=0)  # a private copy: centred in place per stratum
    out: dict[object, SortedStratum] = {}
    for k, (start, end) in enumerate(pairwise(bounds)):
        if start == end:
            continue
        rows = order[start:end]
        out[keys[k]] = _sorted_stratum(
            t[rows],
            rows,
            e[rows],
            xm[start:end],
            None if w is None else w[rows],
            None if codes is None else codes[rows],
        )
    return CoxBlock(strata=out, n_clusters=n_clusters)


def _sorted_stratum(
    time: FloatArray,
    index: IntArray,
    event: npt.NDArray[np.bool_],
    x: FloatArray,
    weights: FloatArray | None,
    cluster: IntArray | None,
) -> SortedStratum:
    """Precompute everything about one sorted stratum that does not depend on ``beta``."""
    x -= x.mean(axis=0)
    n = len(time)
    rows = np.flatnonzero(event)
    # distinct event times: runs of equal time among the event rows (rows sorted by time)
    first = np.flatnonzero(np.diff(time[rows], prepend=np.nan) != 0)
    dk = np.diff(first, append=len(rows))
    entry_time = np.repeat(np.arange(len(dk)), dk)
    frac = (np.arange(len(rows)) - first[entry_time]) / dk[entry_time]
    # the risk set of event time k is every row up to that time's last row; segment k is the
    # rows that join it (after the previous event time's last row)
    last = np.searchsorted(-time, -time[rows[first]], side="right")
    ptr64 = np.concatenate([[0], last]).astype(np.int64)
    seg_ptr: IntArray = ptr64.astype(np.int32) if n < 2**31 - 1 else ptr64  # scipy.sparse
    itype = seg_ptr.dtype
    event_rows = rows.astype(itype)
    mean_weight = None
    we = np.ones(len(rows)) if weights is None else weights[rows]
    x_event_sum = segment_sums(x, np.array([0, len(rows)], dtype=itype), event_rows, we)[0]
    if weights is not None:
        mean_weight = np.bincount(entry_time, weights=we, minlength=len(dk)) / dk
    return SortedStratum(
        time=time,
        index=index,
        x=x,
        n_times=len(dk),
        seg_ptr=seg_ptr,
        seg_idx=np.arange(seg_ptr[-1], dtype=itype),
        row_seg=np.repeat(np.arange(len(dk)), np.diff(seg_ptr)),
        event_rows=event_rows,
        event_ptr=np.append(first, len(rows)).astype(itype),
        entry_time=entry_time,
        event_first=first,
        frac=frac,
        x_event_sum=x_event_sum,
        tied=bool((dk > 1).any()),
        weights=weights,
        mean_weight=mean_weight,
        cluster=cluster,
    )


def per_time(st: SortedStratum, values: FloatArray) -> FloatArray:
    """Sums of ``values`` (one entry or row per event) per event time."""
    if not st.tied:  # one event per event time
        return values
    return np.asarray(np.add.reduceat(values, st.event_first, axis=0), dtype=np.float64)


def segment_sums(
    x: FloatArray, ptr: IntArray, idx: IntArray, weights: FloatArray | None = None
) -> FloatArray:
    """``sum of weights[i] * x[i]`` over each run of rows ``ptr[k]:ptr[k+1]`` (``K x p``).

    A sparse (CSR) product: one pass over ``x`` without a weighted copy of it.
    """
    data = np.ones(len(idx)) if weights is None else weights[: len(idx)]
    runs = sp.csr_matrix((data, idx, ptr), shape=(len(ptr) - 1, len(x)))
    return np.asarray(runs @ x, dtype=np.float64)


CHUNK = 8192  # rows per block of the weighted Gram products (fits in cache)


def tdot(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a.T @ b`` summed over row chunks.

    Chunks keep each BLAS call small: multi-threaded BLAS on one long product is slower
    than one thread when the machine is busy, and chunks stay in cache.
    """
    out = np.zeros((a.shape[1], *b.shape[1:]))
    for s in range(0, len(a), CHUNK):
        out += a[s : s + CHUNK].T @ b[s : s + CHUNK]
    return out


def matvec(x: FloatArray, beta: FloatArray, out: FloatArray) -> FloatArray:
    """``x @ beta`` into ``out``, in row chunks (see :func:`tdot`)."""
    for s in range(0, len(x), CHUNK):
        np.dot(x[s : s + CHUNK], beta, out=out[s : s + CHUNK])
    return out


def scratch(st: SortedStratum, name: str, shape: tuple[int, ...]) -> FloatArray:
    """A scratch array of the stratum, allocated once and reused by every evaluation.

    One set per thread, so threads may evaluate the same stratum at the same time.
    """
    key = (threading.get_ident(), name)
    out = st.work.get(key)
    if out is None or out.shape != shape:
        out = st.work[key] = np.empty(shape)
    return out


def cumulative_hazard(st: SortedStratum, per_time: FloatArray) -> FloatArray:
    """Per row: the sum of ``per_time`` (one value per event time) over event times <= its time.

    Only the rows at risk at some event time (``seg_ptr[-1]`` rows) are returned; the others
    would get 0. The result is a scratch array (valid until the stratum's next evaluation).
    """
    rev = per_time[::-1]
    cum = np.cumsum(rev, axis=0)[::-1]  # segment k is at risk at event times k..K-1
    out = scratch(st, "n2", (len(st.row_seg),))
    return np.take(cum, st.row_seg, out=out, mode="clip")


def weighted_gram(x: FloatArray, v: FloatArray, st: SortedStratum) -> FloatArray:
    """``x' diag(v) x`` over the first ``len(v)`` rows of ``x``, for ``v >= 0`` (overwritten).

    Rows scaled by ``sqrt(v)`` in cache-sized chunks, each a symmetric rank-k product.
    """
    np.sqrt(v, out=v)
    p = x.shape[1]
    out = np.zeros((p, p))
    rows = scratch(st, "chunk", (CHUNK, p))
    for a in range(0, len(v), CHUNK):
        b = min(a + CHUNK, len(v))
        xs = np.multiply(x[a:b], v[a:b, None], out=rows[: b - a])
        out += xs.T @ xs
    return out
