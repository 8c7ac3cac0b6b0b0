"""Multiple-choice eval items: one shape for the stem, the options and the correct answer, however a set writes them.

Why a module: a multiple-choice item leaks when a document carries its stem *and its correct answer*, with or without
the options (a quiz page, a study sheet, an answer key). The screen therefore needs the answer as text, not as a
label: "(B)" means nothing in a document that dropped the options. Eval sets write options as a list, as a dict of
labels (in any order), or inline ("A) 4 B) 5 C) 6"), and the answer as a label, a position or the option's text;
:func:`parse_mcq` resolves all of them to the answer's text, and rejects an item whose answer cannot be resolved
with a message that names it, because a silently unresolved answer would make the item unscreenable.

Both the eval registry (when it loads a set) and the screen (when it indexes one) call :func:`parse_mcq`, so an item
the registry accepted is one the screen can use.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STEM_KEYS = ("stem", "question")
OPTION_KEYS = ("options", "choices")
ANSWER_KEYS = ("answer", "correct")

# An option label at the start of the text or after whitespace: "A)", "(A)", "A.", "A:", "1)", "(1)", "1.".
_LABEL = re.compile(r"(?:^|(?<=\s))\(?([A-Za-z]|\d{1,2})[).:](?=\s)")


class McqError(ValueError):
    """A multiple-choice item whose stem, options or answer cannot be read; the message says which and why."""


@dataclass(frozen=True)
class McqItem:
    """A multiple-choice item reduced to what the screen compares: the stem and the correct answer's text."""

    stem: str
    options: tuple[tuple[str, str], ...]  # (label, text) in the order the set gives them; empty when it gives none
    answer: str  # the correct option's text


def is_mcq(value: Any) -> bool:
    """Whether a screen field value has the multiple-choice shape (an object with a stem and an answer)."""
    return isinstance(value, Mapping) and any(k in value for k in STEM_KEYS) and any(k in value for k in ANSWER_KEYS)


def _one(value: Mapping[str, Any], keys: tuple[str, ...], where: str, *, required: bool = True) -> Any:
    present = [k for k in keys if k in value]
    if len(present) > 1:
        raise McqError(f"{where}: give only one of {present}")
    if not present:
        if required:
            raise McqError(f"{where}: missing '{keys[0]}' (or {list(keys[1:])})")
        return None
    return value[present[0]]


def _sequence_labels(first: str) -> str:
    if first.isdigit():
        return "".join(str(k) for k in range(int(first), int(first) + 40))
    return string.ascii_uppercase if first.isupper() else string.ascii_lowercase


def split_inline_options(text: str) -> list[tuple[str, str]]:
    """(label, text) of options written in one string ("A) 4 B) 5", "(a) x\\n(b) y", "1. x 2. y").

    Labels must run in sequence from A, a, 0 or 1, so that "e.g." or "Fig. 2:" inside an option is not a label;
    text before the first label is ignored (an "Options:" heading).
    """
    found = [(m.start(), m.end(), m.group(1)) for m in _LABEL.finditer(text)]
    starts = [f for f in found if f[2] in ("A", "a", "0", "1")]
    if not starts:
        return []
    first = starts[0]
    expected = iter(_sequence_labels(first[2]))
    want = next(expected)
    picked: list[tuple[int, int, str]] = []
    for item in found[found.index(first) :]:
        if item[2] == want:
            picked.append(item)
            want = next(expected, "")
    bounds = [p[0] for p in picked[1:]] + [len(text)]
    return [(label, text[end:stop].strip()) for (_, end, label), stop in zip(picked, bounds, strict=True)]


def _options(raw: Any, where: str) -> list[tuple[str, str]]:
    if raw is None:
        return []
    if isinstance(raw, str):
        options = split_inline_options(raw)
        if len(options) < 2:
            raise McqError(f"{where}: options text has fewer than two labelled options (A) ... B) ...): {raw[:80]!r}")
    elif isinstance(raw, list):
        options = [(string.ascii_uppercase[k] if k < 26 else str(k + 1), v) for k, v in enumerate(raw)]
    elif isinstance(raw, Mapping):
        options = [(str(k), v) for k, v in raw.items()]
    else:
        kind = type(raw).__name__
        raise McqError(f"{where}: options must be a list, an object of label -> text or a string, got {kind}")
    bad = [label for label, text in options if not isinstance(text, str) or not text.strip()]
    if bad:
        raise McqError(f"{where}: option(s) {bad} are not non-empty strings")
    return options


def _label_key(label: str) -> str:
    return label.strip().strip("()[].:").strip().casefold()


def _answer_text(answer: Any, options: list[tuple[str, str]], where: str) -> str:
    if isinstance(answer, bool) or not isinstance(answer, (str, int)):
        raise McqError(f"{where}: answer must be a label, a 0-based option index or the answer text")
    if isinstance(answer, int):
        if not 0 <= answer < len(options):
            raise McqError(f"{where}: answer index {answer} is outside the {len(options)} options")
        return options[answer][1]
    if not answer.strip():
        raise McqError(f"{where}: answer is empty")
    by_label = {_label_key(label): text for label, text in options}
    if _label_key(answer) in by_label:
        return by_label[_label_key(answer)]
    by_text = {" ".join(text.split()).casefold(): text for _, text in options}
    if not options or " ".join(answer.split()).casefold() in by_text:
        return answer
    raise McqError(
        f"{where}: answer {answer!r} is neither an option label {sorted(label for label, _ in options)} "
        "nor the text of an option"
    )


def parse_mcq(value: Mapping[str, Any], where: str) -> McqItem:
    """The stem, options and correct answer text of one multiple-choice item (``where`` names it in errors).

    Keys: ``stem`` (or ``question``), ``options`` (or ``choices``; optional), ``answer`` (or ``correct``). An answer
    is a label ("B", "(b)", "2)"), a 0-based index into the options as given, or the answer's text; without options
    it must be the text.
    """
    stem = _one(value, STEM_KEYS, where)
    if not isinstance(stem, str) or not stem.strip():
        raise McqError(f"{where}: stem must be a non-empty string")
    unknown = sorted(set(value) - {*STEM_KEYS, *OPTION_KEYS, *ANSWER_KEYS})
    if unknown:
        raise McqError(f"{where}: unknown key(s) {unknown}; expected stem, options, answer")
    options = _options(_one(value, OPTION_KEYS, where, required=False), where)
    answer = _answer_text(_one(value, ANSWER_KEYS, where), options, where)
    return McqItem(stem=stem, options=tuple(options), answer=answer)
