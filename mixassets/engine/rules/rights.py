"""Rights: data whose license we cannot read, or whose rights the project bans, never enters the corpus."""

from __future__ import annotations

import pyarrow as pa

from mixassets.engine import licenses
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule


class UnknownLicenseRule(Rule):
    """A license that is missing, unparsable or not in the license table cannot be checked against any
    release policy, so the document waits for a person instead of being guessed about."""

    id = "rights.unknown_license"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        verdicts: dict[str | None, DocOutcomes] = {}
        out = []
        for expr in docs.column("license").to_pylist():
            if expr not in verdicts:
                verdicts[expr] = self._check(expr)
            out.append(verdicts[expr])
        return out

    @staticmethod
    def _check(expr: str | None) -> DocOutcomes:
        if expr is None or not expr.strip():
            return [Outcome("quarantine", "no license declared")]
        try:
            alternatives = licenses.license_alternatives(expr)
        except licenses.LicenseError as e:
            return [Outcome("quarantine", f"unparsable license: {e}")]
        if alternatives is None:
            return [Outcome("quarantine", f"license {expr!r} is not in the license table")]
        return []


class ForbiddenTagRule(Rule):
    """Keeps out data whose license or declared rights carry a tag the project bans from the corpus."""

    id = "rights.forbidden_tag"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        forbidden = ctx.forbidden_tags
        if not forbidden:
            return [[] for _ in range(docs.num_rows)]
        out = []
        rows = zip(docs.column("license").to_pylist(), docs.column("rights_tags").to_pylist(), strict=True)
        for expr, rights in rows:
            declared = sorted(set(rights or ()) & forbidden)
            if declared:
                out.append([Outcome("quarantine", f"rights tags {declared} are forbidden")])
                continue
            try:
                unavoidable = licenses.forbidden_by(expr, forbidden)
            except licenses.LicenseError:
                unavoidable = None  # the unknown-license rule reports it
            if unavoidable:
                out.append([Outcome("quarantine", f"license {expr!r} carries forbidden tags {sorted(unavoidable)}")])
            else:
                out.append([])
        return out
