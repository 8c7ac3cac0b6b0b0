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


PREFILTER_TEXTS = [
    "",
    "no personal data here at all, just words",
    "mail jane.doe@example.com or +1 (415) 555-0132 today",
    "call +683 4002 or 011 683 4002 or 683 4002 or +43 1234 now",
    "fullwidth \uff0b\uff14\uff14 \uff12\uff10 \uff17\uff19\uff14\uff16 and arabic-indic "
    "\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0663\u0662",
    "Decimal('31.01875') is a Canadian 310 number to phonenumbers",
    "card 4111 1111 1111 1111 and 4111-1111-1111-1111 and 4111111111111111",
    "ssn 123-45-6789, iban GB82 WEST 1234 5698 7654 32 and DE89370400440532013000",
    "ip 192.168.0.1 and 2001:db8::8a2e:370:7334 and fe80::1",
    "key AKIAIOSFODNN7EXAMPLE, \u017fecret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ghp_" + "a" * 36,
    "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n",
    "phone 1x2x3x4x5x6x7x8x9x0 and 415.555.0132 ext. 12 and 1-800-FLOWERS and (415)5550132",
    "emoji 😀 +1 415 555 0132 😀\r\nCRLF line 020 7946 0958\r\n",
    "dates 12/05/2021 and times 10:30:00 and versions 1.2.3.4.5",
]


def test_prefiltered_detection_is_full_detection():
    import random

    import pyarrow as pa

    from mixassets.engine.pii import DETECTORS, find_pii, possible_detectors

    rng = random.Random(0)
    alphabet = "0123456789 +-().x@:/ab\u0663\uff14"
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 60))) for _ in range(2000)]
    texts = PREFILTER_TEXTS + generated
    for region in ("US", "GB"):
        possible = possible_detectors(pa.array(texts), region)
        assert all(d <= frozenset(DETECTORS) for d in possible)
        got = [find_pii(t, region=region, detectors=d) for t, d in zip(texts, possible, strict=True)]
        assert got == [find_pii(t, region=region) for t in texts]
        assert possible[1] == frozenset()  # and it does rule detectors out
        assert sum(not d for d in possible) > 100  # even among the generated texts


def test_preselection_keeps_every_text_a_prefilter_matches():
    """``possible_detectors`` runs the single prefilters only on the texts its one or two passes select: that
    selection must give the same sets as running every prefilter on every text."""
    import re

    import pyarrow as pa

    from mixassets.engine import pii

    def reference(text: str, region: str) -> frozenset[str]:
        found = {name for name, p in pii.PREFILTERS.items() if re.search(p.replace(r"\p{Nd}", r"\d"), text)}
        phone = re.search(pii._PHONE_ANY.replace(r"\p{Nd}", r"\d"), text)
        if region == "US":
            phone = phone and (
                re.search(pii._PHONE_US_NO_PLUS.replace(r"\p{Nd}", r"\d"), text) or re.search("[+\uff0b]", text)
            )
        return frozenset(found | ({"phone"} if phone else set()))

    texts = [*PREFILTER_TEXTS, "dial +1 800 FLOWERS", "1 800 FLOWERS +", "+ and 12 34", "ref 1234", "12:34:56"]
    # Around the literals the single passes are narrowed by: "@", "-NN-", ".N.N.N" and either plus sign.
    texts += ["a@b", "@b", "a@", "123-45-6789", "12-34-5678", "-12-", "1.2.3.4", ".2.3.4", "1.2.3", "1.22.333.4"]
    texts += ["\uff0b12 34", "12 34 \uff0b", "12\uff0b34", "+1\n2\n3\n4", "1234+", "x+xxx", "+"]
    for region in ("US", "GB"):
        expected = [reference(t, region) for t in texts]
        assert pii.possible_detectors(pa.array(texts), region) == expected
        assert {"phone"} in expected or region == "GB"


def test_phone_prefilter_minimums_hold_in_the_metadata():
    """The digit counts the phone prefilter relies on (see ``mixassets.engine.pii``)."""
    import phonenumbers

    def lengths(md):
        descs = (md.general_desc, md.fixed_line, md.mobile, md.toll_free, md.premium_rate, md.shared_cost,
                 md.personal_number, md.voip, md.pager, md.uan, md.voicemail)  # fmt: skip
        return [n for d in descs if d is not None for n in (d.possible_length or ()) if n > 0]

    metas = [
        (md.country_code, lengths(md))
        for md in map(phonenumbers.PhoneMetadata.metadata_for_region, phonenumbers.SUPPORTED_REGIONS)
    ]
    metas += [
        (cc, lengths(phonenumbers.PhoneMetadata.metadata_for_nongeo_region(cc)))
        for cc in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS
    ]
    assert min(min(ls) for _, ls in metas if ls) >= 4
    assert min(len(str(cc)) + min(ls) for cc, ls in metas if ls) >= 6
    assert phonenumbers.PhoneMetadata.metadata_for_region("US").international_prefix == "011"
    assert min(min(ls) for cc, ls in metas if cc == 1 and ls) >= 7


def test_phone_matcher_memo_is_the_plain_matcher():
    """The matcher that finds candidates by their first character and remembers rejected ones finds what
    phonenumbers' own finds, in every context that can flip a candidate's verdict (a letter, a currency sign or the
    text's edge next to it), every region, and texts dense with brackets, plus signs and digit runs."""
    import random

    import phonenumbers

    from mixassets.engine import phone_matcher, pii

    numbers = ["(415) 555-0132", "+44 20 7946 0958", "020 7946 0958", "415.555.0132", "1921", "+1 202-555-0143"]
    contexts = ["x{}y", "${} ", " {}\u20ac", "a{} ", " {}b", "{}", "call {} now", "({})", "{}%", "[1] {}."]
    rng = random.Random(1)
    alphabet = "0123456789      ()[]+-./x:ab\uff08\uff0b\u0663\u2013"
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(10, 120))) for _ in range(300)]
    texts = [c.format(n) for c in contexts for n in numbers] + PREFILTER_TEXTS + generated
    phone_matcher.REJECTED.clear()
    for region in ("US", "GB", "US"):
        for text in texts:
            plain = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region)]
            assert [(h.start, h.end) for h in pii._phones(text, region)] == plain, (region, text)
    assert pii._MATCHER is phone_matcher.MemoMatcher and phone_matcher._STARTS is not None
    assert len(phone_matcher.REJECTED) > 50
