"""Property: whatever the sources, licenses and release policy, the mixture never holds a forbidden document.

The mixture trusts the ``allowed`` flags its caller computes with ``licenses.policy_allows``; this checks
the whole chain on random data: every sampled document passes the policy when re-checked on its own
(which is what the blocking ``mixture_license_policy`` asset check asks), and a document whose every
license choice is non-commercial never reaches a commercial mixture.
"""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from mixassets.engine import licenses
from mixassets.engine.licenses import NON_COMMERCIAL, PARTNER_PREFIX, license_alternatives, policy_allows
from mixassets.engine.mixture import sample_mixture
from mixtrain.config.data import MixtureSpec

TENANTS = ["acme", "globex", "initech"]
# The recognised ids (the table is keyed lower-case; lookups are case-insensitive), plus partner ids for
# every tenant and ids nobody recognises.
KNOWN_IDS = sorted(licenses._TABLE)
PARTNER_IDS = [f"LicenseRef-partner-{t}" for t in TENANTS]
UNKNOWN_IDS = ["Unknown-License-1.0", "LicenseRef-mystery", "Proprietary"]
NC_IDS = [i for i in KNOWN_IDS if "-nc-" in i]  # drawn often so NON_COMMERCIAL docs are common

license_id = st.one_of(
    st.sampled_from(KNOWN_IDS), st.sampled_from(NC_IDS), st.sampled_from(PARTNER_IDS), st.sampled_from(UNKNOWN_IDS)
)
license_expr = st.one_of(
    st.none(),
    license_id,
    st.builds(lambda a, b: f"{a} OR {b}", license_id, license_id),
    st.builds(lambda a, b: f"{a} AND {b}", license_id, license_id),
    st.builds(lambda a, b, c: f"({a} OR {b}) AND {c}", license_id, license_id, license_id),
)
policy = st.one_of(st.sampled_from(["commercial", "research"]), st.sampled_from([f"tenant:{t}" for t in TENANTS]))


@st.composite
def corpus(draw: st.DrawFn) -> tuple[pa.Table, list[int], MixtureSpec]:
    n_sources = draw(st.integers(1, 4))
    doc_ids: list[str] = []
    source_ids: list[str] = []
    license_col: list[str | None] = []
    tokens: list[int] = []
    for s in range(n_sources):
        source_license = draw(license_expr)
        for d in range(draw(st.integers(0, 12))):
            doc_ids.append(f"s{s}-d{d}")
            source_ids.append(f"s{s}")
            # most documents carry their source's license; some carry their own
            license_col.append(draw(st.one_of(st.just(source_license), license_expr)))
            tokens.append(draw(st.integers(0, 400)))
    weights = {f"s{s}": draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])) for s in range(n_sources)}
    weights[draw(st.sampled_from(sorted(weights)))] = 1.0  # the spec needs one positive weight
    max_docs = draw(st.dictionaries(st.sampled_from(sorted(weights)), st.integers(0, 6), max_size=2))
    spec = MixtureSpec(
        weights=weights, max_docs=max_docs, token_budget=draw(st.integers(1, 3000)), seed=draw(st.integers(0, 99))
    )
    schema = pa.schema([("doc_id", pa.string()), ("source_id", pa.string()), ("license", pa.string())])
    docs = pa.table({"doc_id": doc_ids, "source_id": source_ids, "license": license_col}, schema=schema)
    return docs, tokens, spec


def _non_commercial_only(expr: str | None) -> bool:
    alternatives = license_alternatives(expr)
    return alternatives is not None and all(NON_COMMERCIAL in a for a in alternatives)


def _other_tenants_only(expr: str | None, tenant: str) -> bool:
    """Every way of complying needs some other tenant's partner license."""
    alternatives = license_alternatives(expr)
    mine = f"{PARTNER_PREFIX}{tenant}"
    return alternatives is not None and all(
        any(t.startswith(PARTNER_PREFIX) and t != mine for t in a) for a in alternatives
    )


@settings(max_examples=300, deadline=None)
@given(data=corpus(), release_policy=policy)
def test_mixture_never_holds_a_document_the_policy_forbids(data, release_policy: str) -> None:
    docs, tokens, spec = data
    licenses_in = docs.column("license").to_pylist()
    allowed = [policy_allows(lic, release_policy) for lic in licenses_in]
    mixture, stats = sample_mixture(docs, tokens, spec, allowed=allowed)

    mixed = mixture.column("license").to_pylist()
    ids = mixture.column("doc_id").to_pylist()
    # the criterion of the blocking asset check mixassets.checks.mixture_license_policy
    forbidden = [(d, lic) for d, lic in zip(ids, mixed, strict=True) if not policy_allows(lic, release_policy)]
    assert forbidden == []
    allowed_ids = {d for d, ok in zip(docs.column("doc_id").to_pylist(), allowed, strict=True) if ok}
    assert set(ids) <= allowed_ids
    assert len(ids) == len(set(ids))
    if release_policy == "commercial":
        assert not [lic for lic in mixed if _non_commercial_only(lic)]
    if release_policy.startswith("tenant:"):
        tenant = release_policy.removeprefix("tenant:")
        assert not [lic for lic in mixed if _other_tenants_only(lic, tenant)]
    assert stats["totals"]["excluded_by_policy"] == allowed.count(False)


def test_strategy_produces_the_cases_that_matter() -> None:
    """Guard against a generator that silently stops producing non-commercial or unknown licenses."""
    assert NC_IDS and all(_non_commercial_only(i) for i in NC_IDS)
    assert not policy_allows("CC-BY-NC-4.0", "commercial")
    assert not policy_allows("Unknown-License-1.0", "research")
    assert not policy_allows("LicenseRef-partner-globex", "tenant:acme")
