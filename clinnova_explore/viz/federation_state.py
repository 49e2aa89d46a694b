"""State of the federation dashboard: the sites, their policies, their audit logs, and what a
pending analysis would release.

No Panel import here: the class is plain ``param`` so that it can be tested without a browser.
Every row comes from the library: site status and versions from each site's answer to a
``status`` request (sent through the runner, so a site that is down is a row saying so), the
policies from the catalog, the audit entries and chain check from
:class:`~clinnova_explore.federated.audit.AuditLog` at each site's
:meth:`~clinnova_explore.catalog.Site.audit_path`, and the preview from
:meth:`Federation.preview <clinnova_explore.federated.Federation.preview>` (Kaplan-Meier, Cox
of a shipped comparison) or :func:`~clinnova_explore.analysis.contract.plan` (``count_cohort``
or ``characterize`` of a shipped cohort definition, captured without running). A preview
releases nothing; each site records it in its audit log as a preview.

A failure (a site that cannot be reached, an unreadable log, a refused preview) comes back as a
:class:`~clinnova_explore.viz.survival_state.Problem` or a row whose message the page shows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import param

from clinnova_explore.analysis.contract import InProcessRunner, Runner, default_requester
from clinnova_explore.analysis.survival.presets import comparison, comparison_names
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.cohort.library import builtin_definition_names
from clinnova_explore.federated.audit import AuditLog, AuditVerification, entries_frame
from clinnova_explore.federated.site_transforms import with_outcome
from clinnova_explore.federated.status import STATUS_COLUMNS as SITE_STATUS_COLUMNS
from clinnova_explore.federated.status import info_row
from clinnova_explore.viz.survival_state import Problem

if TYPE_CHECKING:
    from clinnova_explore.federated import Federation
    from clinnova_explore.federated.preview import Preview
    from clinnova_explore.federated.protocol import SitePreview

__all__ = [
    "ANALYSES",
    "FederationState",
    "audit_rows",
    "policy_rows",
    "preview_rows",
    "runner_from_env",
    "status_rows",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

ANALYSES: dict[str, str] = {
    "Kaplan-Meier": "kaplan_meier",
    "Cox": "cox",
    "Cohort count": "count",
    "Table 1": "table1",
}
"""Analyses the preview offers (display name -> key)."""

COMPARISON_ANALYSES = frozenset({"kaplan_meier", "cox"})
"""Preview keys that run on a shipped comparison (the others on a cohort definition)."""

DURATION, OUTCOME = "duration", "outcome"

STATUS_COLUMNS = ["site", "name", "country", *SITE_STATUS_COLUMNS[1:]]


SITES_ENV = "CLINNOVA_SITES"
"""Site servers the dashboard talks to: ``basel=127.0.0.1:7401,freiburg=127.0.0.1:7402``."""


def runner_from_env(environ: Mapping[str, str] | None = None) -> Runner | None:
    """A runner connected to the site servers in ``$CLINNOVA_SITES`` (started with
    ``clinnova-explore site serve``), with the shared key ``$CLINNOVA_SITE_KEY``; ``None``
    when ``$CLINNOVA_SITES`` is unset (the sites then run in this process).

    Raises
    ------
    ValueError
        If an entry is not ``site=host:port`` or the key is missing (names the variable).

    Examples
    --------
    >>> runner_from_env({}) is None
    True
    >>> runner_from_env({"CLINNOVA_SITES": "basel=127.0.0.1:7401"})
    Traceback (most recent call last):
    ...
    ValueError: CLINNOVA_SITES is set but CLINNOVA_SITE_KEY (the site servers' shared key) is not
    """
    env = os.environ if environ is None else environ
    listed = env.get(SITES_ENV, "").strip()
    if not listed:
        return None
    key = env.get("CLINNOVA_SITE_KEY", "")
    if not key:
        raise ValueError(
            f"{SITES_ENV} is set but CLINNOVA_SITE_KEY (the site servers' shared key) is not"
        )
    addresses: dict[str, tuple[str, int]] = {}
    for item in listed.split(","):
        site, _, where = item.strip().partition("=")
        host, _, port = where.rpartition(":")
        if not site or not host or not port.isdigit():
            raise ValueError(f"{SITES_ENV}: {item.strip()!r} is not site=host:port")
        addresses[site] = (host, int(port))
    from clinnova_explore.federated.process_runner import ProcessRunner

    return ProcessRunner.connect(addresses, key.encode())


def _message(exc: Exception) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------- rows


def policy_rows(catalog: Catalog) -> pd.DataFrame:
    """One row per catalog site: every rule of its disclosure policy (the catalog's values).

    Allowed analyses are joined with ``", "``; a rule the policy does not set shows as-is
    (``None`` for an optional rule that is off).
    """
    rows = []
    for site in catalog.sites:
        rules = site.policy.model_dump()
        rules["allowed_analyses"] = ", ".join(rules["allowed_analyses"])
        rows.append({"site": site.id, **rules})
    return pd.DataFrame(rows, columns=["site", *DisclosurePolicy.model_fields])


def status_rows(catalog: Catalog, answers: dict[str, Any]) -> pd.DataFrame:
    """One row per catalog site from its answer to a ``status`` request.

    Parameters
    ----------
    catalog
        The sites, in order (name and country come from here when a site does not answer).
    answers
        ``{site id: SiteResponse | SiteStatus}`` as a runner's ``exchange`` returns them.

    Returns
    -------
    pandas.DataFrame
        :data:`STATUS_COLUMNS`; a site that did not answer has its state (``down``,
        ``timeout``, ``error``) and the reason in ``detail``, its versions left empty.
    """
    rows = []
    for site in catalog.sites:
        row: dict[str, Any] = {"site": site.id, "name": site.name, "country": site.country}
        answer = answers.get(site.id)
        info = getattr(answer, "info", None)
        if answer is None:
            row.update(state="error", detail="no answer")
        elif info is not None and getattr(answer, "ok", False):
            row.update({k: v for k, v in info_row(info).items() if k != "site"})
        elif hasattr(answer, "state"):  # a SiteStatus made by the runner
            row.update(state=answer.state, detail=answer.detail or answer.state)
        else:  # a SiteResponse with ok=False
            row.update(state="error", detail=getattr(answer, "error", "") or "no status")
        rows.append(row)
    out = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    out["audit_entries"] = out["audit_entries"].astype("Int64")
    return out.fillna({c: "" for c in STATUS_COLUMNS if c != "audit_entries"})


def audit_rows(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Audit entries as a table, newest first: ``seq, time, requester, analysis, kind,
    released`` (table shapes and value names, or ``refused: <rule>``; see
    :func:`~clinnova_explore.federated.audit.describe_entry`) and ``payload`` (the first 12
    hex digits of the released payload's hash)."""
    out = entries_frame(entries)
    out["payload"] = [str((e.get("released") or {}).get("payload", ""))[:12] for e in entries]
    return out.iloc[::-1].reset_index(drop=True)


def _site_previews(preview: Preview) -> list[SitePreview]:
    sites = getattr(preview, "sites", preview)
    return list(sites)


def preview_rows(preview: Preview) -> pd.DataFrame:
    """What each site would release, one row per site and payload table: ``site, status,
    table, rows, columns`` (their names), ``values`` (names of the site's scalar values),
    ``suppressed`` (cells of that table), ``refused`` (the rule), ``bytes`` (the site's whole
    encoded payload).

    A refusing site, or one releasing only scalar values, has one row without a table; a
    site that did not answer has one row with its status (``down: ...``) and nothing else.
    """
    answered = {p.site: p for p in _site_previews(preview)}
    statuses = dict(getattr(preview, "statuses", {}) or {})
    out: list[dict[str, Any]] = []
    for site_id in list(statuses) or list(answered):
        status = statuses.get(site_id)
        item = answered.get(site_id)
        state = "ok" if status is None else str(status)
        if item is None:
            out.append({"site": site_id, "status": state, "table": "", "rows": 0, "columns": ""})
            continue
        base = {
            "site": site_id,
            "status": state,
            "values": ", ".join(item.values),
            "suppressed": len(item.suppressed),
            "refused": item.refused or "",
            "bytes": int(item.nbytes),
        }
        if item.refused is not None:
            out.append({**base, "table": "", "rows": 0, "columns": ""})
            continue
        for name, (n_rows, _) in item.shapes.items():
            cols = ", ".join(item.columns.get(name, ()))
            cells = sum(c.startswith(f"{site_id}: {name}") for c in item.suppressed)
            out.append(
                {**base, "table": name, "rows": int(n_rows), "columns": cols, "suppressed": cells}
            )
        if not item.shapes:
            out.append({**base, "table": "", "rows": 0, "columns": ""})
    columns = ["site", "status", "table", "rows", "columns", "values", "suppressed", "refused"]
    frame = pd.DataFrame(out, columns=[*columns, "bytes"])
    return frame.fillna({"values": "", "suppressed": 0, "refused": "", "bytes": 0}).astype(
        {"rows": "int64", "suppressed": "int64", "bytes": "int64"}
    )


# ---------------------------------------------------------------------------- state


class FederationState(param.Parameterized):
    """The federation dashboard's choices and what is derived from them.

    Parameters
    ----------
    catalog
        The federation shown.
    runner
        Carries status and preview requests to the sites (default: in process); its
        ``requester`` is what the sites' audit logs record.
    """

    site = param.Selector[str](default=None, objects=[], doc="Site whose audit log is shown.")
    last = param.Integer(
        default=20, bounds=(1, 1000), doc="How many of the site's latest audit entries to show."
    )
    analysis = param.Selector[str](
        default="kaplan_meier", objects=ANALYSES, doc="Analysis whose release is previewed."
    )
    comparison = param.Selector[str](
        default=comparison_names()[0],
        objects={comparison(n).name or n: n for n in comparison_names()},
        doc="Shipped treatment comparison previewed by Kaplan-Meier and Cox.",
    )
    cohort = param.Selector[str](
        default="ms_high_efficacy_start",
        objects=builtin_definition_names(),
        doc="Shipped cohort definition previewed by a cohort count and Table 1.",
    )
    refresh = param.Event(doc="Ask the sites for their status and read the audit logs again.")

    def __init__(self, catalog: Catalog, *, runner: Runner | None = None, **params: Any) -> None:
        self.catalog = catalog
        self.runner: Runner = runner if runner is not None else InProcessRunner()
        self._previews: dict[Hashable, Any] = {}
        self._federations: dict[str, Federation] = {}
        super().__init__(**params)
        self.param.site.objects = catalog.site_ids
        if self.site not in catalog.site_ids:
            self.site = catalog.site_ids[0]

    def close(self) -> None:
        """Release what the comparisons' sites computed and kept (their rows)."""
        for fed in self._federations.values():
            fed.close()
        self._federations.clear()

    @classmethod
    def from_path(
        cls, path: str | Path | None = None, *, runner: Runner | None = None
    ) -> FederationState:
        """Build the state for a catalog file (default: ``$CLINNOVA_CATALOG`` or the project's)
        and a runner (default: :func:`runner_from_env`, else in process)."""
        return cls(Catalog.load(path), runner=runner or runner_from_env())

    # ------------------------------------------------------------------ sites
    @param.depends("refresh")
    def status(self) -> pd.DataFrame:
        """One row per catalog site: state, engine and versions, policy version, audit state
        (see :func:`status_rows`); never raises for a site that is down."""
        from clinnova_explore.federated.protocol import SiteRequest

        requester = getattr(self.runner, "requester", None) or default_requester()
        request = SiteRequest(kind="status", requester=requester)
        requests = {s.id: (s, request) for s in self.catalog.sites}
        try:
            answers = self.runner.exchange(requests, strict=False)
        except Exception as exc:  # the runner itself failed: every site gets the reason
            log.info("federation dashboard: status failed", exc_info=True)
            answers = {s: _failed(s, exc) for s in self.catalog.site_ids}
        return status_rows(self.catalog, answers)

    def policies(self) -> pd.DataFrame:
        """One row per catalog site with its disclosure policy (see :func:`policy_rows`)."""
        return policy_rows(self.catalog)

    # ------------------------------------------------------------------ audit
    def audit_log(self) -> AuditLog:
        """The chosen site's audit log."""
        site = self.catalog.site(self.site)
        return AuditLog(site.audit_path(), site=site.id)

    @param.depends("site", "last", "refresh")
    def audit(self) -> pd.DataFrame | Problem:
        """The chosen site's :attr:`last` audit entries, newest first (:func:`audit_rows`)."""
        try:
            return audit_rows(self.audit_log().tail(self.last))
        except Exception as exc:  # an unreadable log is a message, not a traceback
            log.info("federation dashboard: audit of %s failed", self.site, exc_info=True)
            return Problem(f"site {self.site}: audit log not readable: {_message(exc)}")

    @param.depends("site", "refresh")
    def audit_check(self) -> AuditVerification:
        """The chosen site's hash chain, verified (first bad line and reason when broken)."""
        return self.audit_log().verify()

    @param.depends("site", "refresh")
    def audit_summary(self) -> str:
        """One line on the chosen site's log: where, how many entries, chain OK or broken."""
        check = self.audit_check()
        where = self.audit_log().path
        if check.ok:
            return f"{self.site}: {check.entries} entries in {where}; hash chain verified."
        return (
            f"{self.site}: hash chain BROKEN at line {check.first_bad} of {where}: "
            f"{check.reason}. Entries after it cannot be trusted; restore the log from a copy."
        )

    # ------------------------------------------------------------------ preview
    @param.depends("analysis", "comparison", "cohort")
    def pending(self) -> str:
        """The pending analysis in words (what the preview is of)."""
        label = {v: k for k, v in ANALYSES.items()}[self.analysis]
        if self.analysis in COMPARISON_ANALYSES:
            return f"{label} of {comparison(self.comparison).name or self.comparison}"
        return f"{label} of {builtin_definition(self.cohort).name or self.cohort}"

    def _comparison_sites(self) -> Federation:
        """The chosen comparison's sites with ``outcome`` added at each (kept per comparison,
        so Kaplan-Meier and Cox previews share the rows each site computed)."""
        from clinnova_explore.federated import Federation

        kept = self._federations.get(self.comparison)
        if kept is None:
            fed = Federation.from_cdm(self.catalog, comparison(self.comparison), runner=self.runner)
            kept = self._federations[self.comparison] = fed.transform(with_outcome, "outcome")
        return kept

    def _compute_preview(self) -> Preview:
        if self.analysis == "kaplan_meier":
            sites = self._comparison_sites()
            return sites.preview(
                "kaplan_meier", duration=DURATION, event=OUTCOME, group="treatment"
            )
        if self.analysis == "cox":
            return self._comparison_sites().preview(
                "cox", duration=DURATION, event=OUTCOME, covariates=["treatment"], strata="site"
            )
        from clinnova_explore.analysis.characterize import characterize
        from clinnova_explore.analysis.contract import plan
        from clinnova_explore.analysis.counts import count_cohort

        # the public function's own analysis and spec, captured without running it
        call = count_cohort if self.analysis == "count" else characterize
        return plan(call, builtin_definition(self.cohort), self.catalog).preview(self.runner)

    def _cached(self, key: Hashable, compute: Callable[[], T]) -> T | Problem:
        if key not in self._previews:
            try:
                self._previews[key] = compute()
            except Exception as exc:  # shown in the page; the log keeps the traceback
                log.info("federation dashboard: preview %s failed", key, exc_info=True)
                self._previews[key] = Problem(f"No preview of {self.pending()}: {_message(exc)}")
        value: T | Problem = self._previews[key]
        return value

    @param.depends("analysis", "comparison", "cohort")
    def preview(self) -> Preview | Problem:
        """What each site would release for the pending analysis (nothing is released; each
        site's audit log records a preview). Computed once per choice."""
        subject = self.comparison if self.analysis in COMPARISON_ANALYSES else self.cohort
        return self._cached((self.analysis, subject), self._compute_preview)

    @param.depends("analysis", "comparison", "cohort")
    def preview_table(self) -> pd.DataFrame | Problem:
        """The preview per site and payload table (:func:`preview_rows`)."""
        result = self.preview()
        return result if isinstance(result, Problem) else preview_rows(result)


def _failed(site: str, exc: Exception) -> Any:
    from clinnova_explore.federated.protocol import SiteStatus

    return SiteStatus(site, "error", f"{type(exc).__name__}: {_message(exc)}")
