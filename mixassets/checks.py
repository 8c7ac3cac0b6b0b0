"""Blocking checks on the mixture: they re-verify from stored tables, independently of the stage that wrote
them, that nothing the release policy forbids and nothing contaminated reached training."""

from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetIn, asset_check

from mixassets.engine.licenses import policy_allows
from mixassets.engine.pii import find_pii
from mixtrain.resources import ProjectResource


class Verdict(Protocol):
    """An engine result that a check reports: whether it passed, and what to show."""

    @property
    def passed(self) -> bool: ...

    def metadata(self) -> dict[str, Any]: ...


def check_result(check_name: str, asset_key: str, verdict: Verdict, severity: AssetCheckSeverity) -> AssetCheckResult:
    """The result of a check declared on a multi-asset (``check_specs``), from the engine's verdict."""
    return AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=verdict.passed,
        severity=severity,
        metadata=verdict.metadata(),
    )


@asset_check(asset="mixture", blocking=True, description="No document whose license the release policy forbids.")
def mixture_license_policy(
    context: AssetCheckExecutionContext, project: ProjectResource, mixture: pa.Table
) -> AssetCheckResult:
    policy = project.load().spec.mixture.release_policy
    licenses = mixture.column("license").to_pylist()
    ids = mixture.column("doc_id").to_pylist()
    bad = [(d, lic) for d, lic in zip(ids, licenses, strict=True) if not policy_allows(lic, policy)]
    return AssetCheckResult(
        passed=not bad,
        metadata={"release_policy": policy, "forbidden_documents": len(bad), "examples": str(bad[:5])},
    )


@asset_check(
    asset="mixture",
    blocking=True,
    additional_ins={"contamination_findings": AssetIn()},
    description="No document of the mixture appears in the contamination findings.",
)
def mixture_contamination_free(mixture: pa.Table, contamination_findings: pa.Table) -> AssetCheckResult:
    leaked = set(mixture.column("doc_id").to_pylist()) & set(contamination_findings.column("doc_id").to_pylist())
    return AssetCheckResult(
        passed=not leaked, metadata={"contaminated_documents": len(leaked), "examples": str(sorted(leaked)[:5])}
    )


@asset_check(
    asset="mixture",
    blocking=True,
    description="Zero detectable PII or secrets remain in the mixture (redacted types were replaced at gating).",
)
def mixture_pii_free(mixture: pa.Table) -> AssetCheckResult:
    hits: dict[str, int] = {}
    examples = []
    if "occurrence" in mixture.column_names:  # a repeated document is one text: scan it once
        mixture = mixture.filter(pc.equal(mixture["occurrence"], 0))
    for doc_id, text in zip(mixture.column("doc_id").to_pylist(), mixture.column("text").to_pylist(), strict=True):
        for hit in find_pii(text or ""):
            hits[hit.type] = hits.get(hit.type, 0) + 1
            if len(examples) < 5:
                examples.append(f"{doc_id}:{hit.type}@{hit.start}-{hit.end}")  # spans only, never the value
    return AssetCheckResult(
        passed=not hits,
        metadata={
            "pii_hits": sum(hits.values()),
            **{f"pii_hits_{k.lower()}": v for k, v in hits.items()},
            "examples": str(examples),
        },
    )
