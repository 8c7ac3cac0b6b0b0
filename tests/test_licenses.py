from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixassets.engine.licenses import (
    ATTRIBUTION_REQUIRED,
    COMMERCIAL_OK,
    NON_COMMERCIAL,
    PARTNER_ONLY,
    SHAREALIKE,
    LicenseError,
    check_policy,
    every_license_known,
    forbidden_by,
    is_known,
    license_tags,
    policy_allows,
)

POLICIES = ["commercial", "research", "tenant:acme"]


def test_or_expression_parses_and_allows_commercial() -> None:
    expr = "GPL-2.0-or-later OR Artistic-1.0"
    assert is_known(expr)
    assert policy_allows(expr, "commercial")
    assert license_tags(expr) == frozenset({COMMERCIAL_OK, ATTRIBUTION_REQUIRED})  # the lighter choice


def test_non_commercial_is_research_only() -> None:
    assert not policy_allows("CC-BY-NC-4.0", "commercial")
    assert policy_allows("CC-BY-NC-4.0", "research")
    assert not policy_allows("CC-BY-NC-4.0", "tenant:acme")
    assert NON_COMMERCIAL in (license_tags("CC-BY-NC-4.0") or ())


@pytest.mark.parametrize("expr", [None, "", "  ", "Totally-Made-Up-1.0", "LicenseRef-whatever"])
@pytest.mark.parametrize("policy", POLICIES)
def test_unknown_or_missing_license_is_never_allowed(expr: str | None, policy: str) -> None:
    assert license_tags(expr) is None
    assert not is_known(expr)
    assert not policy_allows(expr, policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_no_derivatives_is_never_trainable(policy: str) -> None:
    assert not policy_allows("CC-BY-ND-4.0", policy)
    assert not policy_allows("CC-BY-NC-ND-4.0", policy)


def test_permissive_copyleft_and_public_domain() -> None:
    for expr in ["MIT", "Apache-2.0", "BSD-3-Clause", "ISC", "PSF-2.0", "CC0-1.0", "Unlicense", "MPL-2.0"]:
        assert policy_allows(expr, "commercial"), expr
    assert SHAREALIKE in (license_tags("CC-BY-SA-4.0") or ())
    assert SHAREALIKE in (license_tags("GPL-3.0-only") or ())
    assert license_tags("CC0-1.0") == frozenset({COMMERCIAL_OK})
    assert is_known("GPL-2.0+") and is_known("LGPL-2.1-or-later") and is_known("gpl-3.0-or-later")


def test_and_unions_restrictions_or_offers_a_choice() -> None:
    assert not policy_allows("MIT AND CC-BY-NC-4.0", "commercial")
    assert policy_allows("MIT AND CC-BY-NC-4.0", "research")
    assert policy_allows("MIT OR CC-BY-NC-4.0", "commercial")
    assert license_tags("MIT AND CC-BY-NC-4.0") == frozenset({COMMERCIAL_OK, ATTRIBUTION_REQUIRED, NON_COMMERCIAL})


def test_and_binds_tighter_than_or_and_parentheses_regroup() -> None:
    assert policy_allows("CC-BY-NC-4.0 AND MIT OR Apache-2.0", "commercial")  # (NC AND MIT) OR Apache
    assert not policy_allows("CC-BY-NC-4.0 AND (MIT OR Apache-2.0)", "commercial")


def test_with_exception_keeps_the_license_tags() -> None:
    expr = "GPL-2.0-only WITH Classpath-exception-2.0"
    assert is_known(expr)
    assert license_tags(expr) == license_tags("GPL-2.0-only")
    assert policy_allows("(" + expr + ") OR MIT", "commercial")


def test_research_only_and_partner_conventions() -> None:
    assert policy_allows("LicenseRef-research-only", "research")
    assert not policy_allows("LicenseRef-research-only", "commercial")
    assert not policy_allows("LicenseRef-research-only", "tenant:acme")

    partner = "LicenseRef-partner-acme"
    assert PARTNER_ONLY in (license_tags(partner) or ())
    assert policy_allows(partner, "tenant:acme")
    assert policy_allows("MIT", "tenant:acme")
    assert not policy_allows(partner, "tenant:globex")
    assert not policy_allows(partner, "commercial")
    assert not policy_allows(partner, "research")
    assert not policy_allows(f"{partner} AND LicenseRef-partner-globex", "tenant:acme")
    assert policy_allows(f"{partner} OR LicenseRef-partner-globex", "tenant:globex")


@pytest.mark.parametrize(
    "expr",
    [
        "MIT AND",
        "(MIT",
        "MIT)",
        "MIT OR OR BSD-3-Clause",
        "AND MIT",
        "MIT $ BSD-3-Clause",
        "(MIT OR ISC) WITH X",
        "MIT WITH",
    ],
)
def test_unparsable_expression_raises_naming_it(expr: str) -> None:
    with pytest.raises(LicenseError, match=r"license expression '.*'") as info:
        policy_allows(expr, "research")
    assert repr(expr) in str(info.value)
    assert not is_known(expr)


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown license policy 'open'"):
        policy_allows("MIT", "open")
    with pytest.raises(ValueError):
        check_policy("tenant:")


def test_forbidden_by_is_what_cannot_be_avoided() -> None:
    nc = frozenset({NON_COMMERCIAL})
    assert forbidden_by("CC-BY-NC-4.0", nc) == nc
    assert forbidden_by("CC-BY-NC-4.0 OR MIT", nc) == frozenset()
    assert forbidden_by("CC-BY-NC-4.0 AND MIT", nc) == nc
    assert forbidden_by("Nope-1.0", nc) is None


# -- property: combining forbidden alternatives never yields an allowed expression ----------------------
FORBIDDEN_LEAVES = {
    "commercial": [
        "CC-BY-NC-4.0",
        "CC-BY-NC-SA-4.0",
        "CC-BY-ND-4.0",
        "LicenseRef-research-only",
        "LicenseRef-partner-acme",
        "Unknown-License-9",
        "CC-BY-NC-ND-3.0",
    ],
    "research": ["CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "LicenseRef-partner-acme", "Not-A-License"],
    "tenant:acme": ["CC-BY-NC-4.0", "CC-BY-ND-4.0", "LicenseRef-research-only", "LicenseRef-partner-globex", "Bogus"],
}
ALLOWED_LEAVES = ["MIT", "Apache-2.0", "GPL-3.0-or-later", "CC-BY-4.0", "CC0-1.0", "Python-2.0"]


def _expressions(leaves: list[str]) -> st.SearchStrategy[str]:
    leaf = st.builds(
        lambda lid, exc: f"{lid} WITH {exc}" if exc else lid,
        st.sampled_from(leaves),
        st.sampled_from([None, None, "Classpath-exception-2.0", "LLVM-exception"]),
    )
    return st.recursive(
        leaf,
        lambda inner: st.builds(
            lambda op, args: "(" + f" {op} ".join(args) + ")",
            st.sampled_from(["AND", "OR"]),
            st.lists(inner, min_size=2, max_size=4),
        ),
        max_leaves=12,
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data(), policy=st.sampled_from(POLICIES))
def test_forbidden_alternatives_never_combine_into_allowed(data: st.DataObject, policy: str) -> None:
    expr = data.draw(_expressions(FORBIDDEN_LEAVES[policy]))
    assert not policy_allows(expr, policy), expr


@settings(max_examples=100, deadline=None)
@given(data=st.data(), policy=st.sampled_from(POLICIES))
def test_and_with_a_forbidden_license_is_forbidden_or_with_an_allowed_one_is_allowed(
    data: st.DataObject, policy: str
) -> None:
    expr = data.draw(_expressions(FORBIDDEN_LEAVES[policy] + ALLOWED_LEAVES))
    bad = data.draw(st.sampled_from(FORBIDDEN_LEAVES[policy]))
    good = data.draw(st.sampled_from(ALLOWED_LEAVES))
    assert not policy_allows(f"{bad} AND {expr}", policy)
    assert not policy_allows(f"{expr} AND ({bad})", policy)
    assert policy_allows(f"{expr} OR {good}", policy)


@pytest.mark.parametrize(
    ("expr", "every"),
    [
        ("MIT", True),
        ("MIT OR Apache-2.0 WITH LLVM-exception", True),  # an exception is not a license to recognise
        ("MIT OR Foo-1.0", False),  # usable (MIT), yet one id is unknown
        ("(MIT OR Foo-1.0) AND CC0-1.0", False),
        ("Foo-1.0", False),
    ],
)
def test_every_license_known_checks_each_id(expr: str, every: bool) -> None:
    assert every_license_known(expr) is every
    with pytest.raises(LicenseError):
        every_license_known(expr + " AND")
