"""Audit of finished runs: per-round reports of what was protected against whom and what each party received,
a scan of the run directory for secrets, and (in :mod:`privfed.audit.attacks`) empirical attacks on server views.

Threat model: the audit reads only the run directory (public figures, digests, metrics); it recomputes the threat
check from the run's declared ``[threat]`` and never needs a secret. Submodules are imported on use so that the
report and the secret scan do not pull in torch.
"""

from __future__ import annotations

from privfed.audit.report import AuditReport, PartyView, RoundAudit, build_report
from privfed.audit.secret_scan import SecretFinding, scan_for_secrets

__all__ = ["AuditReport", "PartyView", "RoundAudit", "SecretFinding", "build_report", "scan_for_secrets"]
