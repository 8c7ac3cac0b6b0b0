"""Unsafe-content scoring: a weighted lexicon by category, and an optional local Hugging Face classifier.

The lexicon is the cheap, explainable first line: every score traces back to character spans a reviewer can
look at, and it needs no model. Scores are weighted hits per 1,000 words, so one swear word in a long, calm
document stays under a threshold that a short rant full of them crosses. The lexicon is deliberately small and
precise: terms that are unsafe in nearly every context (not "kill", which is also a Unix command), and for
malware the artefacts of attack code (shellcode byte strings, reverse-shell one-liners, tool names) rather than
words that security documentation uses too.

The classifier is for teams that have a moderation model on disk; it is never downloaded.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TOXICITY = "toxicity"
EXPLICIT = "explicit"
WEAPONS = "weapons"
MALWARE = "malware"
CATEGORIES = (TOXICITY, EXPLICIT, WEAPONS, MALWARE)

# (term, weight). A plain term matches case-insensitively as whole words, with any run of spaces, hyphens or
# underscores between its words; a term written as re"..." is a regular expression used as is.
_LEXICON: dict[str, tuple[tuple[str, float], ...]] = {
    TOXICITY: (
        ("idiot", 1.0),
        ("idiots", 1.0),
        ("moron", 1.0),
        ("morons", 1.0),
        ("imbecile", 1.0),
        ("dumbass", 1.5),
        ("loser", 0.5),
        ("worthless", 0.5),
        ("pathetic", 0.5),
        ("scum", 1.0),
        ("shut up", 1.0),
        ("stupid", 0.5),
        ("asshole", 2.0),
        ("bastard", 1.5),
        ("bitch", 2.0),
        ("shit", 1.0),
        ("bullshit", 1.0),
        ("fuck", 2.0),
        ("fucking", 2.0),
        ("fucker", 2.0),
        ("motherfucker", 3.0),
        ("piece of shit", 2.0),
        ("i hate you", 2.0),
        ("go die", 3.0),
        ("kill yourself", 5.0),
        ("kys", 3.0),
    ),
    EXPLICIT: (
        ("porn", 2.0),
        ("porno", 2.0),
        ("pornography", 2.0),
        ("pornographic", 2.0),
        ("xxx", 1.0),
        ("nsfw", 1.0),
        ("nude", 1.0),
        ("nudes", 2.0),
        ("naked", 0.5),
        ("erotic", 1.0),
        ("orgasm", 2.0),
        ("hardcore sex", 3.0),
        ("sex tape", 3.0),
        ("explicit sex", 3.0),
        ("blowjob", 3.0),
        ("handjob", 3.0),
        ("camgirl", 2.0),
        ("onlyfans", 1.0),
        ("milf", 2.0),
        ("hentai", 2.0),
    ),
    WEAPONS: (
        ("pipe bomb", 3.0),
        ("nail bomb", 3.0),
        ("car bomb", 2.0),
        ("build a bomb", 4.0),
        ("make a bomb", 4.0),
        ("improvised explosive", 3.0),
        ("explosive device", 2.0),
        ("detonator", 1.5),
        ("blasting cap", 2.0),
        ("ammonium nitrate", 1.0),
        ("thermite", 1.0),
        ("napalm", 1.5),
        ("nerve agent", 3.0),
        ("sarin", 3.0),
        ("ricin", 3.0),
        ("mustard gas", 2.0),
        ("ghost gun", 2.0),
        ("untraceable gun", 3.0),
        ("3d printed gun", 2.0),
        ("auto sear", 3.0),
        ("full auto conversion", 3.0),
        ("bump stock", 1.5),
        ("suppressor", 0.5),
        ("silencer", 0.5),
        ("assault rifle", 1.0),
        ("mass shooting", 2.0),
    ),
    MALWARE: (
        (r're"(?:\\x[0-9a-fA-F]{2}){8,}"', 4.0),  # shellcode written as a "\x90\x90..." byte string
        (r're"/dev/(?:tcp|udp)/[\w.\-]+/\d+"', 4.0),  # bash reverse shell: bash -i >& /dev/tcp/host/port
        (r're"\b(?:nc|ncat|netcat)\s+(?:-\w+\s+)*-[a-z]*e\s+/bin/(?:ba)?sh\b"', 4.0),  # nc -e /bin/sh
        (r're"\bnc\s+-[a-z]*l[a-z]*v?[a-z]*p\s+\d+"', 1.0),  # listener: nc -lvnp 4444
        (r're"os\.dup2\(\s*\w+\.fileno\(\)"', 3.0),  # python reverse shell wiring a socket to stdio
        (r're"\bpowershell(?:\.exe)?\s+(?:-\w+\s+)*-e(?:nc|ncodedcommand)?\s+[A-Za-z0-9+/=]{20,}"', 3.0),
        ("msfvenom", 3.0),
        ("meterpreter", 3.0),
        ("mimikatz", 3.0),
        ("keylogger", 2.0),
        ("keyloggers", 2.0),
        ("key logger", 2.0),
        ("ransomware", 2.0),
        ("cryptolocker", 3.0),
        ("rootkit", 1.5),
        ("botnet", 1.5),
        ("reverse shell", 1.5),
        ("bind shell", 1.5),
        ("shellcode", 1.5),
        ("exploit kit", 2.0),
        ("credential stealer", 2.0),
        ("infostealer", 2.0),
        ("remote access trojan", 2.0),
        ("trojan", 1.0),
        ("disable antivirus", 2.0),
    ),
}


_Match = tuple[str, float, int, int]  # category, weight, start, end


def _index() -> tuple[dict[str, list[tuple[tuple[str, ...], str, float]]], list[tuple[re.Pattern[str], str, float]]]:
    """Plain terms indexed by their first word (longest term first), and the regular expressions.

    Scanning words and looking them up in a dict costs the same however large the lexicon grows; one big regex
    alternation tried at every position of the text was ~40x slower on the pydoc topics.
    """
    by_first: dict[str, list[tuple[tuple[str, ...], str, float]]] = {}
    patterns = []
    for cat, terms in _LEXICON.items():
        for term, weight in terms:
            if term.startswith('re"') and term.endswith('"'):
                patterns.append((re.compile(term[3:-1], re.IGNORECASE), cat, weight))
                continue
            first, *rest = _TOKEN_RE.findall(term.lower())
            by_first.setdefault(first, []).append((tuple(rest), cat, weight))
    for entries in by_first.values():
        entries.sort(key=lambda e: -len(e[0]))
    return by_first, patterns


_TOKEN_RE = re.compile(r"[^\W_]+")  # letters and digits: "key_logger" and "key-logger" are two words
_SEPARATOR_RE = re.compile(r"[\s\-_]+")
_TERMS, _PATTERNS = _index()
_WORD_RE = re.compile(r"\S+")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _may_start_a_term(text: str) -> bool:
    """False only where :func:`_term_matches` finds nothing: no token begins a term whose other words follow it.
    Checked on the lowered words alone, which C-level ``findall`` and ``map`` give without their offsets, so the
    texts that pass (a few in a hundred: most term words stand alone) are the only ones tokenised word by word.
    An ASCII text is lowered whole, which lowers each token; elsewhere each token is lowered on its own, since
    lowering can split a token ("\u0130" lowers to "i" and a combining dot)."""
    words = _TOKEN_RE.findall(text.lower()) if text.isascii() else list(map(str.lower, _TOKEN_RE.findall(text)))
    for i, word in enumerate(words):
        entries = _TERMS.get(word)
        if entries is not None and any(tuple(words[i + 1 : i + 1 + len(rest)]) == rest for rest, _, _ in entries):
            return True
    return False


def _term_matches(text: str) -> list[_Match]:
    if not _may_start_a_term(text):
        return []
    tokens = [(m.group().lower(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]
    out: list[_Match] = []
    skip_until = 0
    for i, (word, start, _) in enumerate(tokens):
        entries = _TERMS.get(word)
        if entries is None or start < skip_until or (start > 0 and _is_word_char(text[start - 1])):
            continue
        for rest, cat, weight in entries:
            j = i + len(rest)
            if j >= len(tokens) or any(
                tokens[i + k + 1][0] != w or not _SEPARATOR_RE.fullmatch(text, tokens[i + k][2], tokens[i + k + 1][1])
                for k, w in enumerate(rest)
            ):
                continue
            end = tokens[j][2]
            if end < len(text) and _is_word_char(text[end]):
                continue
            out.append((cat, weight, start, end))
            skip_until = end
            break
    return out


def _matches(text: str, patterns: Sequence[bool] | None = None) -> list[_Match]:
    """Every hit in text order; where hits overlap the leftmost (then the longest) is kept. ``patterns`` (default:
    all) says which of the regular expressions to run, as :func:`possible_patterns` rules them out."""
    found = _term_matches(text)
    for i, (rx, cat, weight) in enumerate(_PATTERNS):
        if patterns is None or patterns[i]:
            found.extend((cat, weight, m.start(), m.end()) for m in rx.finditer(text))
    found.sort(key=lambda h: (h[2], -h[3]))
    kept: list[_Match] = []
    for hit in found:
        if not kept or hit[2] >= kept[-1][3]:
            kept.append(hit)
    return kept


# For each regular expression of the lexicon, an RE2 pattern that every text it matches also matches (a literal
# it cannot match without, case-insensitive like it); a regular expression without an entry here is assumed to
# match anywhere, which is always correct and only slower.
_PATTERN_PREFILTERS = {
    r"(?:\\x[0-9a-fA-F]{2}){8,}": r"\\x[0-9a-fA-F]{2}",
    r"/dev/(?:tcp|udp)/[\w.\-]+/\d+": r"/dev/",
    r"\b(?:nc|ncat|netcat)\s+(?:-\w+\s+)*-[a-z]*e\s+/bin/(?:ba)?sh\b": r"/bin/",
    r"\bnc\s+-[a-z]*l[a-z]*v?[a-z]*p\s+\d+": r"(?:^|[^A-Za-z0-9_])nc[^\pL\pN_]",  # \s is no letter
    r"os\.dup2\(\s*\w+\.fileno\(\)": r"os\.dup2\(",
    r"\bpowershell(?:\.exe)?\s+(?:-\w+\s+)*-e(?:nc|ncodedcommand)?\s+[A-Za-z0-9+/=]{20,}": r"powershell",
}


def _prefilter() -> str:
    """One RE2 pattern that every text with a lexicon match matches. A plain term matches only where each of its
    words is a whole token (lowered), so the text holds its longest word up to case (RE2's case folding also
    pairs "k" with the Kelvin sign, the one non-ASCII character that lowers to an ASCII letter) with no ASCII
    letter or digit on either side (a token ends at any character that is not a letter or a digit)."""
    longest = {
        max(reversed(_TOKEN_RE.findall(term.lower())), key=len)  # the last longest: "make a bomb" -> "bomb"
        for terms in _LEXICON.values()
        for term, _ in terms
        if not (term.startswith('re"') and term.endswith('"'))
    }
    words = "|".join(sorted(longest))
    patterns = [_PATTERN_PREFILTERS.get(rx.pattern, "") for rx, _, _ in _PATTERNS]
    return "|".join([f"(?:^|[^A-Za-z0-9])(?i:{words})(?:[^A-Za-z0-9]|$)", *(f"(?i:{p})" for p in patterns)])


LEXICON_PREFILTER = _prefilter()


def may_match(texts: pa.Array | pa.ChunkedArray) -> list[bool]:
    """Per text, False where the lexicon cannot match (``lexicon_scores`` is all zeros), in one pass over them."""
    return pc.fill_null(pc.match_substring_regex(texts, LEXICON_PREFILTER), False).to_pylist()


def possible_patterns(texts: pa.Array | pa.ChunkedArray) -> list[tuple[bool, ...]]:
    """Per text, which of the lexicon's regular expressions may match in it: False where its prefilter (one RE2
    pass over all the texts) does not match, so that ``lexicon_scores(text, patterns)`` gives what
    ``lexicon_scores(text)`` gives; a regular expression without a prefilter may match anywhere."""
    columns = [
        pc.fill_null(pc.match_substring_regex(texts, f"(?i:{p})"), False).to_pylist() if p else [True] * len(texts)
        for p in (_PATTERN_PREFILTERS.get(rx.pattern, "") for rx, _, _ in _PATTERNS)
    ]
    return list(zip(*columns, strict=True)) if columns else [() for _ in range(len(texts))]


def lexicon_hits(text: str) -> list[tuple[str, int, int]]:
    """``(category, start, end)`` for every lexicon match, in text order, never overlapping."""
    return [(cat, s, e) for cat, _, s, e in _matches(text)]


def lexicon_scores(text: str, patterns: Sequence[bool] | None = None) -> dict[str, float]:
    """Weighted hits per 1,000 whitespace-separated words, for every category (0.0 when none); ``patterns`` as
    :func:`possible_patterns` gives them saves running the regular expressions that cannot match."""
    scores = dict.fromkeys(CATEGORIES, 0.0)
    matches = _matches(text, patterns)
    if not matches:
        return scores
    n_words = max(1, sum(1 for _ in _WORD_RE.finditer(text)))
    for cat, w, _, _ in matches:
        scores[cat] += w
    return {cat: round(total * 1000.0 / n_words, 6) for cat, total in scores.items()}


# Label-name fragments that mark a class as unsafe, and the negations that undo them ("non_toxic", "not-harmful").
_UNSAFE_LABEL_RE = re.compile(r"toxic|unsafe|harm|offensive", re.IGNORECASE)
_NEGATED_LABEL_RE = re.compile(r"^(?:non|not|no)[\s_\-]?", re.IGNORECASE)
_GENERIC_LABELS = ("LABEL_0", "LABEL_1")


def default_unsafe_labels(id2label: dict[int, str]) -> list[str]:
    """The labels counted as unsafe when the caller names none.

    A label is unsafe when its name contains toxic, unsafe, harm or offensive and does not start with a negation
    (non/not/no). A two-class model with the generic names LABEL_0/LABEL_1 is read as (safe, unsafe), the
    convention of binary moderation heads fine-tuned without label names. Anything else is ambiguous and raises,
    because guessing which class is "unsafe" would silently invert the filter.
    """
    names = [id2label[i] for i in sorted(id2label)]
    unsafe = [n for n in names if _UNSAFE_LABEL_RE.search(n) and not _NEGATED_LABEL_RE.match(n)]
    if unsafe:
        return unsafe
    if tuple(names) == _GENERIC_LABELS:
        return [_GENERIC_LABELS[1]]
    raise ValueError(f"cannot tell which of the labels {names} are unsafe; pass unsafe_labels explicitly")


class HFTextClassifier:
    """A local Hugging Face sequence-classification model scoring texts by their probability of being unsafe.

    Single-label models (softmax) give the summed probability of the unsafe labels. Multi-label models
    (``problem_type == "multi_label_classification"``, sigmoid per label, e.g. toxicity heads with one output per
    kind of harm) give the highest unsafe-label probability, since the labels are not exclusive.
    """

    def __init__(self, path: str, unsafe_labels: Sequence[str] | None = None, *, max_length: int = 512):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"safety classifier: model directory not found: {path}")
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"safety classifier: {path} has no config.json (not a Hugging Face model dir)")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = path
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"safety classifier: tokenizer in {path} has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            # Decoder-only heads find each row's last real token through pad_token_id; without it batches fail.
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        id2label = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        labels = list(unsafe_labels) if unsafe_labels is not None else default_unsafe_labels(id2label)
        by_name = {v: k for k, v in id2label.items()}
        unknown = [lab for lab in labels if lab not in by_name]
        if unknown or not labels:
            raise ValueError(f"safety classifier: unsafe_labels {unknown or labels} not among {sorted(by_name)}")
        self.unsafe_labels = labels
        self._unsafe_idx = sorted(by_name[lab] for lab in labels)
        self.multi_label = self.model.config.problem_type == "multi_label_classification"
        model_max = getattr(self.tokenizer, "model_max_length", max_length) or max_length
        self.max_length = int(min(max_length, model_max))

    def unsafe_probability(self, texts: list[str], batch_size: int = 16) -> list[float]:
        """Per text, the probability in [0, 1] that it is unsafe; texts longer than ``max_length`` tokens are cut."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        torch = self._torch
        out: list[float] = []
        for i in range(0, len(texts), batch_size):
            batch = texts[i : i + batch_size]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                logits: Any = self.model(**enc).logits.float()
            if self.multi_label:
                probs = torch.sigmoid(logits)[:, self._unsafe_idx].max(dim=-1).values
            else:
                probs = torch.softmax(logits, dim=-1)[:, self._unsafe_idx].sum(dim=-1)
            values = [float(p) for p in probs.tolist()]
            if any(math.isnan(p) for p in values):
                raise ValueError(f"safety classifier {self.path} produced NaN probabilities")
            out.extend(min(1.0, max(0.0, p)) for p in values)
        return out
