from __future__ import annotations

import itertools

import pytest

from mixassets.engine.pii import (
    CREDIT_CARD,
    EMAIL,
    IBAN,
    PHONE,
    PII_TYPES,
    SECRET,
    US_SSN,
    find_pii,
    redact,
)

FAKE_PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDfakefakefakefakefakefakefakefakefakefakefakeAAAA==\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def _found(text: str) -> list[tuple[str, str]]:
    return [(h.type, text[h.start : h.end]) for h in find_pii(text)]


def test_new_types_are_listed():
    assert {CREDIT_CARD, IBAN, US_SSN, SECRET} <= set(PII_TYPES)
    assert len(set(PII_TYPES)) == len(PII_TYPES)


@pytest.mark.parametrize(
    "value",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "3782 822463 10005", "5555555555554444"],
)
def test_luhn_valid_card_numbers_are_found_with_exact_span(value):
    text = f"Paid with {value}, thanks."
    assert _found(text) == [(CREDIT_CARD, value)]
    start = text.index(value)
    assert [(h.start, h.end) for h in find_pii(text)] == [(start, start + len(value))]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 declined",  # bad Luhn
        "order 4938271605827364 shipped",  # random 16 digits, not Luhn-valid
        "order 0000 0000 0000 0000 shipped",  # Luhn-valid but no card
        "mixed 4111 1111-1111 1111 separators",
        "build 4111111111111111.5 seconds",  # part of a decimal
        "id 14111111111111111111111 too long",
    ],
)
def test_card_near_misses(text):
    assert not any(t == CREDIT_CARD for t, _ in _found(text))


def test_iban_grouped_and_compact():
    text = "Refund to DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432 please."
    assert _found(text) == [(IBAN, "DE89 3704 0044 0532 0130 00"), (IBAN, "GB82WEST12345698765432")]
    # A following upper-case word is not part of the IBAN.
    assert _found("to DE89 3704 0044 0532 0130 00 EUR") == [(IBAN, "DE89 3704 0044 0532 0130 00")]


def test_iban_with_bad_checksum_is_not_found():
    assert _found("Refund to DE88 3704 0044 0532 0130 00 please.") == []
    assert _found("Refund to GB83WEST12345698765432 please.") == []


def test_ssn_valid_format_and_excluded_ranges():
    assert _found("SSN 219-09-9999 on file") == [(US_SSN, "219-09-9999")]
    for bad in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000", "123-45-67890"):
        assert _found(f"SSN {bad} on file") == [], bad


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("session ASIAY34FZKBOKMUTVV7A expires", "ASIAY34FZKBOKMUTVV7A"),
        (
            'aws_secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("token ghp_" + "A1b2" * 9 + " end", "ghp_" + "A1b2" * 9),
        ("GITHUB_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijKLMNOPqrstuvwxyz0123", None),
        (
            "hook xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp ok",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
        ),
        ("key=AIzaSyA-1234567890abcdefghijklmnopqrstu;", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
        ("stripe sk_live_51Habcdefghijklmnop0123 here", "sk_live_51Habcdefghijklmnop0123"),
        (f"key:\n{FAKE_PEM}\ndone", FAKE_PEM),
    ],
)
def test_secrets_are_found_with_exact_span(text, secret):
    found = _found(text)
    assert [t for t, _ in found] == [SECRET]
    if secret is not None:
        assert found[0][1] == secret
    else:
        assert found[0][1].startswith("github_pat_")


def test_secret_near_misses():
    assert _found("AKIA is the prefix of AWS access key ids") == []
    assert _found("AKIAIOSFODNN7EXAMPL") == []  # one character short
    # Forty base64 characters are only a secret next to a secret-key name.
    assert _found("checksum wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") == []
    assert _found("sk_test_51Habcdefghijklmnop0123 is a test key") == []
    assert _found("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----") == []


def test_unterminated_pem_block_is_still_a_secret():
    cut = FAKE_PEM.rsplit("\n", 1)[0]
    text = f"{cut}\n\nThe rest of the post."
    assert _found(text) == [(SECRET, cut)]


def test_redaction_replaces_each_type_with_its_placeholder():
    text = (
        "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 219-09-9999, "
        "key AKIAIOSFODNN7EXAMPLE, mail jane@example.com."
    )
    assert redact(text, find_pii(text)) == (
        "Card <CREDIT_CARD>, IBAN <IBAN>, SSN <US_SSN>, key <SECRET>, mail <EMAIL>."
    )


def test_long_mixed_text_keeps_types_apart():
    parts = [
        "Call +1 202-555-0143 about card 5555 5555 5555 4444.",
        "Wire to GB82 WEST 1234 5698 7654 32 by Friday.",
        "Version 3.11.4 was released, see build 4938271605827364.",
        f"Leaked:\n{FAKE_PEM}\n",
        "Contact ops@example.net or 219-09-9999 (fake).",
    ]
    text = "\n".join(parts * 20)
    hits = find_pii(text)
    assert all(a.end <= b.start for a, b in itertools.pairwise(hits))
    types = [h.type for h in hits]
    assert types == [PHONE, CREDIT_CARD, IBAN, SECRET, EMAIL, US_SSN] * 20
    for h in hits:
        value = text[h.start : h.end]
        if h.type == CREDIT_CARD:
            assert value == "5555 5555 5555 4444"
        if h.type == SECRET:
            assert value == FAKE_PEM
    redacted = redact(text, hits)
    for raw in ("4444", "GB82", "OPENSSH", "219-09", "ops@"):
        assert raw not in redacted
