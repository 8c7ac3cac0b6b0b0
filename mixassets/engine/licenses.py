"""SPDX license expressions mapped to the policy tags the mixture and release gates reason about.

A source declares what it is licensed under; what we need to know is what we may do with it. The answer
depends on the whole expression, not on one id: ``A OR B`` lets the licensee pick, so it permits what any
alternative permits, while ``A AND B`` binds the licensee to both, so restrictions add up. We therefore
reduce an expression to its alternatives (disjunctive normal form over tag sets) and decide a policy as
"some alternative is acceptable". Anything we do not recognise counts as not allowed: a wrong "no" costs
a source, a wrong "yes" can cost a release.

Conventions beyond SPDX:

* ``LicenseRef-research-only``: usable for research, never shipped commercially.
* ``LicenseRef-partner-<tenant>``: licensed to one customer only; tagged ``PARTNER_ONLY`` plus
  ``PARTNER:<tenant>`` so a tenant policy can tell its own data from another tenant's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from mixtrain.config.data import check_release_policy

COMMERCIAL_OK = "COMMERCIAL_OK"
ATTRIBUTION_REQUIRED = "ATTRIBUTION_REQUIRED"
SHAREALIKE = "SHAREALIKE"
NON_COMMERCIAL = "NON_COMMERCIAL"
NO_DERIVATIVES = "NO_DERIVATIVES"
RESEARCH_ONLY = "RESEARCH_ONLY"
PARTNER_ONLY = "PARTNER_ONLY"
PARTNER_PREFIX = "PARTNER:"

# Tags that take a right away; COMMERCIAL_OK and the obligations never block a use on their own.
_NEVER_TRAINABLE = frozenset({NO_DERIVATIVES})
_NOT_COMMERCIAL = frozenset({NON_COMMERCIAL, RESEARCH_ONLY, PARTNER_ONLY}) | _NEVER_TRAINABLE


class LicenseError(ValueError):
    """A license expression could not be parsed; the message quotes the expression."""


def _tags(*tags: str) -> frozenset[str]:
    return frozenset(tags)


_PERMISSIVE = _tags(COMMERCIAL_OK, ATTRIBUTION_REQUIRED)
_PUBLIC_DOMAIN = _tags(COMMERCIAL_OK)
_COPYLEFT = _tags(COMMERCIAL_OK, ATTRIBUTION_REQUIRED, SHAREALIKE)
_BY_NC = _tags(ATTRIBUTION_REQUIRED, NON_COMMERCIAL)
_BY_NC_SA = _tags(ATTRIBUTION_REQUIRED, NON_COMMERCIAL, SHAREALIKE)
_BY_ND = _tags(COMMERCIAL_OK, ATTRIBUTION_REQUIRED, NO_DERIVATIVES)
_BY_NC_ND = _tags(ATTRIBUTION_REQUIRED, NON_COMMERCIAL, NO_DERIVATIVES)

_PERMISSIVE_IDS = [
    "MIT",
    "Apache-1.1",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-3-Clause-Clear",
    "BSD-4-Clause",
    "ISC",
    "PSF-2.0",
    "Python-2.0",
    "Python-2.0.1",
    "Zlib",
    "BSL-1.0",
    "X11",
    "NCSA",
    "PostgreSQL",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "AFL-3.0",
    "W3C",
    "OpenSSL",
    "OFL-1.1",
    "CC-BY-1.0",
    "CC-BY-2.0",
    "CC-BY-2.5",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "ODC-By-1.0",
    "CDLA-Permissive-1.0",
    "CDLA-Permissive-2.0",
]
_PUBLIC_DOMAIN_IDS = ["CC0-1.0", "Unlicense", "0BSD", "MIT-0", "PDDL-1.0", "WTFPL", "CC-PDDC"]
_COPYLEFT_IDS = [
    "MPL-1.1",
    "MPL-2.0",
    "MPL-2.0-no-copyleft-exception",
    "EPL-1.0",
    "EPL-2.0",
    "CDDL-1.0",
    "CDDL-1.1",
    "EUPL-1.1",
    "EUPL-1.2",
    "ODbL-1.0",
    "CDLA-Sharing-1.0",
    "OSL-3.0",
    "CECILL-2.1",
]
_CC_VERSIONS = ("1.0", "2.0", "2.5", "3.0", "4.0")
_GPL_FAMILY = {"GPL": ("1.0", "2.0", "3.0"), "LGPL": ("2.0", "2.1", "3.0"), "AGPL": ("1.0", "3.0")}


def _build_table() -> dict[str, frozenset[str]]:
    table: dict[str, frozenset[str]] = dict.fromkeys(_PERMISSIVE_IDS, _PERMISSIVE)
    table.update(dict.fromkeys(_PUBLIC_DOMAIN_IDS, _PUBLIC_DOMAIN))
    table.update(dict.fromkeys(_COPYLEFT_IDS, _COPYLEFT))
    for v in _CC_VERSIONS:
        table[f"CC-BY-SA-{v}"] = _COPYLEFT
        table[f"CC-BY-NC-{v}"] = _BY_NC
        table[f"CC-BY-NC-SA-{v}"] = _BY_NC_SA
        table[f"CC-BY-ND-{v}"] = _BY_ND
        table[f"CC-BY-NC-ND-{v}"] = _BY_NC_ND
    for family, versions in _GPL_FAMILY.items():
        for v in versions:
            for suffix in ("", "-only", "-or-later", "+"):  # the bare and "+" forms are deprecated but common
                table[f"{family}-{v}{suffix}"] = _COPYLEFT
    table["LicenseRef-research-only"] = _tags(RESEARCH_ONLY)
    return {k.lower(): v for k, v in table.items()}


_TABLE = _build_table()
_PARTNER_RE = re.compile(r"^licenseref-partner-([a-z0-9][a-z0-9_.\-]*)$")
_TOKEN_RE = re.compile(r"\s*(?:(?P<paren>[()])|(?P<word>[A-Za-z0-9.+:\-]+)|(?P<bad>\S))")
_OPERATORS = {"and", "or", "with"}


def leaf_tags(license_id: str) -> frozenset[str] | None:
    """Tags of a single SPDX id (no operators); None when we do not know the license."""
    key = license_id.lower()
    if key in _TABLE:
        return _TABLE[key]
    m = _PARTNER_RE.match(key)
    if m:
        return _tags(PARTNER_ONLY, f"{PARTNER_PREFIX}{m.group(1)}")
    return None


# -- parsing -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Leaf:
    license_id: str
    exception: str | None = None


@dataclass(frozen=True)
class _Op:
    op: str  # "and" | "or"
    args: tuple[_Node, ...]


_Node = _Leaf | _Op


def _tokenize(expr: str) -> list[str]:
    tokens: list[str] = []
    for m in _TOKEN_RE.finditer(expr):
        if m.group("bad") is not None:
            bad, at = m.group("bad"), m.start("bad")
            raise LicenseError(f"license expression {expr!r}: unexpected character {bad!r} at position {at}")
        tokens.append(m.group("paren") or m.group("word"))
    return tokens


class _Parser:
    """Recursive descent over the SPDX grammar: WITH binds tightest, then AND, then OR."""

    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.pos = 0

    def fail(self, what: str) -> LicenseError:
        where = self.tokens[self.pos] if self.pos < len(self.tokens) else "end of expression"
        return LicenseError(f"license expression {self.expr!r}: {what} (at {where!r}, token {self.pos + 1})")

    def peek_op(self) -> str | None:
        if self.pos < len(self.tokens) and self.tokens[self.pos].lower() in _OPERATORS:
            return self.tokens[self.pos].lower()
        return None

    def parse(self) -> _Node:
        if not self.tokens:
            raise LicenseError(f"license expression {self.expr!r}: empty")
        node = self.parse_or()
        if self.pos != len(self.tokens):
            raise self.fail("unexpected token")
        return node

    def parse_or(self) -> _Node:
        return self._chain("or", self.parse_and)

    def parse_and(self) -> _Node:
        return self._chain("and", self.parse_with)

    def _chain(self, op: str, operand: Callable[[], _Node]) -> _Node:
        """``operand (op operand)*``: one operand alone, or an ``_Op`` of all of them."""
        args = [operand()]
        while self.peek_op() == op:
            self.pos += 1
            args.append(operand())
        return args[0] if len(args) == 1 else _Op(op, tuple(args))

    def parse_with(self) -> _Node:
        node = self.parse_atom()
        if self.peek_op() == "with":
            if not isinstance(node, _Leaf):
                raise self.fail("WITH must follow a single license id, not a parenthesised expression")
            self.pos += 1
            exception = self.parse_id("an exception id after WITH")
            node = _Leaf(node.license_id, exception)
        return node

    def parse_atom(self) -> _Node:
        if self.pos < len(self.tokens) and self.tokens[self.pos] == "(":
            self.pos += 1
            node = self.parse_or()
            if self.pos >= len(self.tokens) or self.tokens[self.pos] != ")":
                raise self.fail("missing ')'")
            self.pos += 1
            return node
        return _Leaf(self.parse_id("a license id"))

    def parse_id(self, what: str) -> str:
        if self.pos >= len(self.tokens):
            raise self.fail(f"expected {what}")
        tok = self.tokens[self.pos]
        if tok in "()" or tok.lower() in _OPERATORS:
            raise self.fail(f"expected {what}")
        self.pos += 1
        return tok


@lru_cache(maxsize=4096)
def _parse(expr: str) -> _Node:
    return _Parser(expr).parse()


def _alternatives(node: _Node) -> frozenset[frozenset[str] | None]:
    """Every way a licensee could comply, as the tag set that choice carries; None marks an unknown choice.

    Exceptions (``WITH``) only ever grant extra permissions (linking, runtime use), so ignoring them can
    only make a decision stricter, never looser.
    """
    if isinstance(node, _Leaf):
        return frozenset({leaf_tags(node.license_id)})
    parts = [_alternatives(a) for a in node.args]
    if node.op == "or":
        return frozenset().union(*parts)
    combos: frozenset[frozenset[str] | None] = frozenset({frozenset()})
    for part in parts:
        combos = frozenset(
            None if a is None or b is None else a | b for a in combos for b in part
        )  # dedup keeps this bounded by the number of distinct tag sets
    return combos


def license_alternatives(expr: str | None) -> list[frozenset[str]] | None:
    """The known choices an expression offers (tag set per choice); None when no choice is fully known."""
    if expr is None or not expr.strip():
        return None
    known = [a for a in _alternatives(_parse(expr)) if a is not None]
    if not known:
        return None
    return sorted(known, key=_restrictiveness)


def every_license_known(expr: str) -> bool:
    """True when every license id of ``expr`` is one we recognise (``WITH`` exceptions aside).

    Every id appears in some alternative and an alternative is unknown exactly when one of its ids is, so
    this is "no alternative is unknown". Raises LicenseError if ``expr`` does not parse.
    """
    return None not in _alternatives(_parse(expr))


def _restrictiveness(tags: frozenset[str]) -> tuple[int, int, list[str]]:
    blocking = len(tags & _NOT_COMMERCIAL)
    return (blocking, len(tags), sorted(tags))


def license_tags(expr: str | None) -> frozenset[str] | None:
    """Tags of the least restrictive choice the expression offers; None for unknown or missing licenses.

    A single set is a summary for display and metadata; decisions go through ``policy_allows`` which
    looks at every alternative.
    """
    alts = license_alternatives(expr)
    return None if alts is None else alts[0]


def is_known(expr: str | None) -> bool:
    """True when at least one way of complying with ``expr`` uses only licenses we recognise."""
    try:
        return license_alternatives(expr) is not None
    except LicenseError:
        return False


def _tags_allow(tags: frozenset[str], policy: str) -> bool:
    if tags & _NEVER_TRAINABLE:
        return False
    if policy == "commercial":
        return not tags & _NOT_COMMERCIAL
    if policy == "research":
        return PARTNER_ONLY not in tags
    tenant = policy.removeprefix("tenant:").lower()
    partners = {t.removeprefix(PARTNER_PREFIX) for t in tags if t.startswith(PARTNER_PREFIX)}
    if tags & {NON_COMMERCIAL, RESEARCH_ONLY}:
        return False
    return partners <= {tenant}


def check_policy(policy: str) -> str:
    """Validate a policy name (``commercial``, ``research`` or ``tenant:<name>``) and return it."""
    return check_release_policy(policy)


def policy_allows(expr: str | None, policy: str) -> bool:
    """May data under ``expr`` be trained on and released under ``policy``? Unknown licenses never may.

    Raises LicenseError for an unparsable expression, so a typo in a source file is reported, not
    silently treated like a restrictive license.
    """
    check_policy(policy)
    alts = license_alternatives(expr)
    return alts is not None and any(_tags_allow(a, policy) for a in alts)


def forbidden_by(expr: str | None, forbidden_tags: frozenset[str]) -> frozenset[str] | None:
    """The forbidden tags the licensee cannot avoid (empty when some choice avoids them all); None if unknown."""
    alts = license_alternatives(expr)
    if alts is None:
        return None
    hits = [a & forbidden_tags for a in alts]
    if any(not h for h in hits):
        return frozenset()
    return min(hits, key=lambda h: (len(h), sorted(h)))
