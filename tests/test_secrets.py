"""Secrets in hostile input: each planted credential is found with its exact span and redacted away, ordinary
prose and code are left alone, and overlap resolution gives the simple greedy answer at any size."""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixassets.engine.pii import (
    _PRIORITY,
    DETECTORS,
    PII_TYPES,
    SECRET,
    Hit,
    _resolve,
    find_pii,
    hashed_placeholder,
    possible_detectors,
    redact,
    redact_with_hashes,
)
from tests.planted_secrets import GITHUB, HF, PLANTED


def _secrets_in(text: str) -> list[str]:
    return [text[h.start : h.end] for h in find_pii(text) if h.type == SECRET]


@pytest.mark.parametrize(("name", "text", "secret"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_secret_is_found_with_its_span(name: str, text: str, secret: str) -> None:
    assert _secrets_in(text) == [secret]


def test_all_planted_secrets_in_one_document_are_redacted() -> None:
    text = "\n".join(t for _, t, _ in PLANTED)
    hits = find_pii(text)
    assert sorted(text[h.start : h.end] for h in hits if h.type == SECRET) == sorted(s for _, _, s in PLANTED)
    for out in (redact(text, hits), redact_with_hashes(text, hits)):
        for _, _, secret in PLANTED:
            assert secret not in out
        assert _secrets_in(out) == []  # a placeholder is not itself a secret
    assert "AccountName=acme" in redact(text, hits)  # only the key, not the whole connection string


def test_prefilter_lets_every_planted_secret_through() -> None:
    texts = [t for _, t, _ in PLANTED]
    for text, detectors in zip(texts, possible_detectors(pa.array(texts)), strict=True):
        assert "secret" in detectors
        assert find_pii(text, detectors=detectors) == find_pii(text)


def test_library_detector_finds_formats_the_patterns_do_not_know() -> None:
    # A SendGrid key: no pattern of ours, one of detect-secrets' plugins.
    key = "SG." + "aB3dE5fG7hJ9kL1mN3pQ5r" + "." + "sT7uV9wX1yZ3aB5cD7eF9gH1iJ3kL5mN7oP9qR1sT3u"
    text = f"SENDGRID_API_KEY={key}\nother line"
    assert _secrets_in(text) == [key]
    assert "secret" in possible_detectors(pa.array([text]))[0]


def test_unicode_before_a_secret_keeps_offsets_right() -> None:
    sendgrid = "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"
    text = f"Schlüssel für die Übergabe — 令牌:\n  token = {HF} ✓\n{sendgrid}"
    found = _secrets_in(text)
    assert found == [HF, sendgrid]


ORDINARY = [
    "The quick brown fox jumps over the lazy dog. Version 3.11.4 shipped on 2023-06-06.",
    "def connect(url: str, timeout: float = 30.0) -> Connection:\n    return Connection(url, timeout=timeout)\n",
    "See https://docs.python.org/3/library/urllib.parse.html#url-parsing for details.",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "self.assertEqual(test_bytes_to_int32_conversion(b'\\x00\\x01'), 1)",
    "email me at http://example.com/contact or read sk-learn's docs; glance at gl-matrix",
    "password = getpass.getpass()  # never hard-code a password",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_has_no_secret(text: str) -> None:
    assert _secrets_in(text) == []


def test_stdlib_sample_has_no_secret() -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in lib.glob("*.py"))[:60]
    assert files
    flagged = [p.name for p in files if _secrets_in(p.read_text(encoding="utf-8"))]
    assert flagged == []


def test_hashed_placeholder_matches_equal_values_only() -> None:
    a = f"one {GITHUB} two"
    b = f"three four five {GITHUB}"
    ra, rb = redact_with_hashes(a, find_pii(a)), redact_with_hashes(b, find_pii(b))
    tag = f"[SECRET:sha256:{hashlib.sha256(GITHUB.encode()).hexdigest()[:12]}]"
    assert ra == f"one {tag} two" and rb == f"three four five {tag}"
    assert hashed_placeholder(SECRET, GITHUB) == tag
    assert hashed_placeholder(SECRET, GITHUB + "x") != tag
    with pytest.raises(ValueError, match="overlapping"):
        redact_with_hashes("abcdef", [Hit(SECRET, 0, 3), Hit(SECRET, 2, 4)])


def test_detectors_are_unchanged_names() -> None:
    assert DETECTORS == ("secret", "card", "iban", "ssn", "email", "ipv4", "ipv6", "phone")
    assert SECRET in PII_TYPES


# --- overlap resolution --------------------------------------------------------------------------------------


def _reference_resolve(hits: list[Hit]) -> list[Hit]:
    """The plain quadratic greedy: longest first, then priority, then leftmost; keep what overlaps nothing kept."""
    chosen: list[Hit] = []
    for h in sorted(hits, key=lambda h: (-(h.end - h.start), _PRIORITY[h.type], h.start)):
        if all(h.end <= c.start or h.start >= c.end for c in chosen):
            chosen.append(h)
    return sorted(chosen, key=lambda h: h.start)


_hit = st.builds(
    lambda t, s, n: Hit(t, s, s + n),
    st.sampled_from(sorted(_PRIORITY)),
    st.integers(0, 60),
    st.integers(0, 12),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_hit, max_size=40))
def test_resolve_equals_reference(hits: list[Hit]) -> None:
    assert _resolve(hits) == _reference_resolve(hits)


def test_resolve_many_dense_overlaps_equals_reference() -> None:
    import random

    rng = random.Random(7)
    types = sorted(_PRIORITY)
    hits = [Hit(rng.choice(types), s, s + rng.randint(0, 30)) for s in (rng.randint(0, 3000) for _ in range(1500))]
    assert _resolve(hits) == _reference_resolve(hits)


def test_many_ip_addresses_resolve_like_the_reference() -> None:
    # The hostile case was 16k addresses in one document (see benchmarks/bench_secrets.py for its timing);
    # the reference is quadratic, so compare on 2k.
    text = " ".join(f"10.0.{i // 256}.{i % 256}" for i in range(2000))
    hits = find_pii(text, detectors={"ipv4"})
    assert len(hits) == 2000
    from mixassets.engine.pii import _ipv4

    assert hits == _reference_resolve(_ipv4(text))
