"""phonenumbers' matcher with the same answers at a fraction of the cost on prose: the PII detector's phone finder.

Two costs dominate the library's matcher on long texts, and neither changes what it finds:

* Finding candidates. The library searches its candidate pattern from each position on; that pattern opens with
  an optional repeated group, so Python's regex engine cannot skip ahead to a plausible first character and tries
  the whole pattern at every position of the text (about two thirds of the matcher's time on the benchmark
  corpus). A candidate can only begin with a bracket or a plus sign (the pattern's lead class) or with a decimal
  digit, so a one-class pattern, which the engine scans for quickly, finds those positions and the candidate
  pattern is tried there alone: the leftmost position where it matches is the one the library's search returns.
* Parsing and validating candidates: prose offers the same hopeless ones over and over (a year, a footnote mark,
  a page number), so a rejection is remembered (see :class:`MemoMatcher`).

Both lean on the library's private methods; without them the plain matcher is used (``MATCHER``).
``tests/test_pii_more.py`` compares this matcher with the plain one.
"""

from __future__ import annotations

import re

import phonenumbers
import phonenumbers.phonenumbermatcher as _lib

__all__ = ["MATCHER", "REJECTED", "MemoMatcher"]


def _candidate_starts() -> re.Pattern[str] | None:
    """Every character a match of the library's candidate pattern can start with, as one class; None when the
    library's pattern is not the one described above (then its own search is used)."""
    lead, flags = getattr(_lib, "_LEAD_CLASS_CHARS", None), getattr(_lib, "_REGEX_FLAGS", None)
    pattern = getattr(_lib, "_PATTERN", None)
    if lead is None or flags is None or pattern is None:
        return None
    # After the optional lead group the pattern needs a digit ("\d{1,n}"): a match starts with one or the other.
    opening = f"(?:[{lead}]{getattr(_lib, '_PUNCTUATION', '')}){getattr(_lib, '_LEAD_LIMIT', '')}\\d"
    if not pattern.pattern.startswith(opening):
        return None
    return re.compile(f"[{lead}\\d]", flags)


_STARTS = _candidate_starts()


class MemoMatcher(phonenumbers.PhoneNumberMatcher):
    """phonenumbers' matcher, finding candidates faster and remembering which ones it turned down.

    Whether a candidate passes ``_parse_and_verify`` depends only on its own characters, on whether it starts
    the text, on the characters just before and after it (a Latin letter or a currency sign next to it rules it
    out), and on the matcher's region and leniency; a rejection seen once for that key is therefore returned at
    once afterwards. Accepted candidates are rare and are always parsed again, since the match carries its offset.
    Everything else, the order of candidates and the budget of ``max_tries`` included, is the library's own.
    """

    def _find(self, index: int) -> object:
        """The next match at or after ``index``, as the library's ``_find`` walks the candidates: each one cut
        before a second number's start, tried unless shorter than the minimum (a try spends one of ``max_tries``),
        and the search resumed after it."""
        if _STARTS is None:
            return super()._find(index)
        text = self.text
        while self._max_tries > 0:
            found = _next_candidate(text, index)
            if found is None:
                return None
            start = found.start()
            candidate = self._trim_after_first_match(_lib._SECOND_NUMBER_START_PATTERN, text[start : found.end()])
            if len(candidate) >= self._min_candidate_length:
                match = self._extract_match(candidate, start)
                if match is not None:
                    return match
                self._max_tries -= 1
            index = start + len(candidate)
        return None

    def _parse_and_verify(self, candidate: str, offset: int) -> object:
        end = offset + len(candidate)
        before = self.text[offset - 1] if offset > 0 else None
        after = self.text[end] if end < len(self.text) else None
        key = (self.preferred_region, self.leniency, candidate, before, after)
        if key in REJECTED:
            return None
        match = super()._parse_and_verify(candidate, offset)
        if match is None:
            if len(REJECTED) >= _REJECTED_MAX:
                REJECTED.clear()
            REJECTED.add(key)
        return match


def _next_candidate(text: str, pos: int) -> re.Match[str] | None:
    """``_PATTERN.search(text, pos)``: the candidate pattern tried only where a candidate can start."""
    assert _STARTS is not None
    while (lead := _STARTS.search(text, pos)) is not None:
        found = _lib._PATTERN.match(text, lead.start())
        if found is not None:
            return found
        pos = lead.start() + 1
    return None


REJECTED: set[tuple[object, ...]] = set()
_REJECTED_MAX = 1 << 16  # keys; a few MB at most, emptied when full


def _has_internals() -> bool:
    """Whether the library's matcher has the private methods and fields :class:`MemoMatcher` builds on."""
    probe = phonenumbers.PhoneNumberMatcher("", "US")
    methods = ("_find", "_parse_and_verify", "_extract_match", "_trim_after_first_match")
    fields = ("_max_tries", "_min_candidate_length")
    return (
        all(hasattr(probe, m) for m in methods + fields)
        and hasattr(_lib, "_SECOND_NUMBER_START_PATTERN")
        and hasattr(_lib, "_PATTERN")
    )


# The methods are the library's, not its public interface: without them, the plain matcher.
MATCHER = MemoMatcher if _has_internals() else phonenumbers.PhoneNumberMatcher
