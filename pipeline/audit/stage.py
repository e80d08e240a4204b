"""The audit of one target: run the chain (:mod:`pipeline.audit.chain`) on its facts.

Owns :func:`audit` and what it returns, :class:`AuditReport`: the findings in chain order, the
round and the MLflow stores (configured and recorded) the command prints. Facts are gathered
once, by :class:`pipeline.audit.facts.Facts`, as the links ask for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.audit.chain import CHAIN, applies, check_link
from pipeline.audit.destroyed import mark_destroyed
from pipeline.audit.facts import Facts
from pipeline.audit.findings import Finding, passed
from pipeline.audit.target import AuditTarget
from pipeline.config import Config


@dataclass(frozen=True)
class AuditReport:
    """The findings of one audit, in chain order."""

    target: AuditTarget
    round: str | None
    tracking_uri: str
    recorded_tracking_uri: str | None
    findings: list[Finding]

    @property
    def passed(self) -> bool:
        return passed(self.findings)

    @property
    def failed_links(self) -> list[str]:
        return [f.link for f in self.findings if not f.passed]

    def as_dict(self) -> dict[str, object]:
        """The report for machines (``outreach audit --json``): what the lines say, as data."""
        return {
            "target": self.target.given,
            "round": self.round,
            "tracking_uri": self.tracking_uri,
            "recorded_tracking_uri": self.recorded_tracking_uri,
            "verdict": "passed" if self.passed else "failed",
            "failed_links": self.failed_links,
            "findings": [
                {
                    "link": f.link,
                    "status": f.status,
                    "message": f.message,
                    "details": list(f.details[1:]),  # the first is the message
                }
                for f in self.findings
            ],
        }


def audit(
    config: Config, target: AuditTarget, sample_size: int | None = None, full: bool = False
) -> AuditReport:
    """Verify every link from the list (or round) back to the code; never raises on a mismatch.
    ``full``: re-score every household of the round (or list), not a sample."""
    return audit_facts(Facts(config, target, sample_size, full))


def audit_facts(facts: Facts) -> AuditReport:
    """The chain run on facts already gathered (or being gathered): one report."""
    target = facts.target
    findings = [
        finding for link in CHAIN if applies(link, facts) for finding in check_link(link, facts)
    ]
    # files destroyed under a recorded retention run are marked so, not failed (docs/retention.md)
    findings = mark_destroyed(findings, facts.ledger.entries, facts.round_label)
    return AuditReport(
        target, facts.round_label, facts.tracking_uri, facts.recorded_tracking_uri, findings
    )
