"""Derivations a site runs on its own rows, and the mark that lets one cross to a site.

A federation's :meth:`~clinnova_explore.federated.Federation.transform` sends a function to
each site. In process any function works; a site server (another process, another hospital)
runs only functions this package marks with :func:`site_transform`, so a request can name a
reviewed derivation (optionally bound with :func:`functools.partial`) but never bring code of
its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd

__all__ = ["is_site_transform", "site_transform", "with_outcome"]

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__clinnova_site_transform__"


def site_transform(fn: F) -> F:
    """Mark a module-level function of this package as one a site server may run."""
    setattr(fn, _MARK, True)
    return fn


def is_site_transform(fn: Any) -> bool:
    """True for a marked function, or a :func:`functools.partial` of one.

    Examples
    --------
    >>> is_site_transform(functools.partial(with_outcome, outcome="y")), is_site_transform(len)
    (True, False)
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    return bool(getattr(fn, _MARK, False))


@site_transform
def with_outcome(
    df: pd.DataFrame, *, event: str = "event", outcome: str = "outcome"
) -> pd.DataFrame:
    """A site's time-to-event rows with ``outcome``: 1 when ``event`` is 1 (the outcome), 0
    when censored (0) or when a competing event (2) came first.

    Examples
    --------
    >>> with_outcome(pd.DataFrame({"event": [0, 1, 2]}))["outcome"].tolist()
    [0, 1, 0]
    """
    return df.assign(**{outcome: (df[event] == 1).astype("int64")})
