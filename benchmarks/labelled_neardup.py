"""A labelled near-duplicate set from real text that ships with Python, for measuring dedupe quality.

Why this shape:

* **Real text, offline.** The synthetic corpus of ``bench_gate_dedupe`` is random words, where every
  5-gram is unique; real text repeats phrases, so shingle sets overlap by accident and LSH sees harder
  inputs. ``pydoc_data.topics`` (the language reference as prose) and the stdlib's own module sources are
  on every Python install, so tests and benchmarks can build the set without a download. Their content
  changes between Python versions, which is harmless: every label is computed from the text generated.
* **Doc-sized pieces** (1-4 KB, cut at line ends) so the shingle counts match real documents. Pieces
  that already resemble each other (exact Jaccard >= ``_BASE_MAX_JACCARD``, e.g. repeated licence
  headers) are skipped, so the planted pairs are the only intended duplicates.
* **Graded edits.** Each pair is a base piece and a copy edited (word substitutions, insertions,
  deletions and line moves) until its Jaccard falls to a target drawn uniformly from ``jaccard_range``;
  some copies only change case and spacing (Jaccard 1.0). So the pairs span the whole band around any
  dedupe threshold instead of sitting at a few fixed edit rates.
* **Truth independent of the engine.** A pair's label is the exact Jaccard of the two word-5-gram sets
  built from :func:`~mixassets.engine.text_norm.dedupe_words` with plain Python sets of strings; the
  engine's 64-bit hashing, MinHash and LSH play no part, so a bug there cannot hide in the labels.

:func:`score` turns any tool's decisions ("this doc was dropped for that one") into precision over drops
and recall over pairs, so the same yardstick applies to mixtrain and to other dedupe tools.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import string
import sysconfig
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from mixassets.engine.text_norm import dedupe_words
from mixtrain.schema import DOCUMENT_SCHEMA

NGRAM = 5
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
_BASE_MAX_JACCARD = 0.2
_MIN_WORDS = 120  # a piece needs enough words that one edit moves its Jaccard by about a percent or less
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3"}


@dataclass(frozen=True)
class LabelledPair:
    """A base document, its edited copy and their exact shingle Jaccard (the truth label)."""

    base_id: str
    copy_id: str
    jaccard: float
    edit: str  # "format" (case/spacing only) | "edit" (word and line edits)


@dataclass(frozen=True)
class Quality:
    """Precision over drops and recall over pairs that clearly should merge (see :func:`score`)."""

    threshold: float
    dropped: int
    correct_drops: int
    positives: int  # pairs with truth >= threshold + margin
    merged_positives: int
    negatives: int  # pairs with truth < threshold
    merged_negatives: int

    @property
    def precision(self) -> float:
        return self.correct_drops / self.dropped if self.dropped else 1.0

    @property
    def recall(self) -> float:
        return self.merged_positives / self.positives if self.positives else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "threshold": self.threshold,
            "dropped": self.dropped,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "positives": self.positives,
            "negatives": self.negatives,
            "negatives_merged": self.merged_negatives,
        }


def shingles(text: str, ngram: int = NGRAM) -> set[str]:
    """Word n-grams of the normalised text as strings; a text shorter than ``ngram`` words is one shingle."""
    words = dedupe_words(text)
    if not words:
        return set()
    return {" ".join(words[i : i + ngram]) for i in range(max(1, len(words) - ngram + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def source_texts() -> Iterator[tuple[str, str]]:
    """(name, text) of the language-reference topics, then of the stdlib's modules, in a fixed order."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"pydoc:{name}", topics[name]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(stdlib).parts):
            continue
        try:
            yield f"stdlib:{path.relative_to(stdlib).as_posix()}", path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable module is simply not a candidate


def chunk_lines(text: str, rng: random.Random, min_bytes: int = 1000, max_bytes: int = 4000) -> list[str]:
    """Pieces of ``text`` cut at line ends, each aiming at a size drawn from [min_bytes, max_bytes];
    a trailing piece shorter than ``min_bytes`` is dropped rather than padded."""
    pieces: list[str] = []
    lines = text.splitlines()
    target, current, size = rng.randint(min_bytes, max_bytes), [], 0
    for line in lines:
        if size + len(line) + 1 > target and size >= min_bytes:
            pieces.append("\n".join(current))
            target, current, size = rng.randint(min_bytes, max_bytes), [], 0
        current.append(line)
        size += len(line.encode("utf-8")) + 1
        if size > max_bytes:
            pieces.append("\n".join(current))
            target, current, size = rng.randint(min_bytes, max_bytes), [], 0
    if size >= min_bytes:
        pieces.append("\n".join(current))
    return pieces


def _distinct_bases(candidates: Iterable[tuple[str, str]], count: int) -> list[tuple[str, str, set[str]]]:
    """(origin, text, shingles) of the first ``count`` candidates that resemble no earlier pick, found
    through a shingle -> pick index so that only picks sharing a shingle are compared."""
    picked: list[tuple[str, str, set[str]]] = []
    owners: dict[str, list[int]] = {}
    for origin, text in candidates:
        sh = shingles(text)
        if len(dedupe_words(text)) < _MIN_WORDS:
            continue
        shared = Counter(k for s in sh for k in owners.get(s, ()))
        if any(n / (len(sh) + len(picked[k][2]) - n) >= _BASE_MAX_JACCARD for k, n in shared.items()):
            continue
        for s in sh:
            owners.setdefault(s, []).append(len(picked))
        picked.append((origin, text, sh))
        if len(picked) == count:
            break
    return picked


def _candidates(rng: random.Random) -> Iterator[tuple[str, str]]:
    """(origin, piece) from prose and code interleaved, each kind's pieces in a shuffled order."""
    prose: list[tuple[str, str]] = []
    code: list[tuple[str, str]] = []
    for name, text in source_texts():
        (prose if name.startswith("pydoc:") else code).append((name, text))
    rng.shuffle(code)
    prose_pieces = [(f"{n}#piece={i}", p) for n, t in prose for i, p in enumerate(chunk_lines(t, rng))]
    rng.shuffle(prose_pieces)

    def code_pieces() -> Iterator[tuple[str, str]]:
        for name, text in code:
            for i, piece in enumerate(chunk_lines(text, rng)):
                yield f"{name}#piece={i}", piece

    code_iter = code_pieces()
    for piece in prose_pieces:
        yield piece
        nxt = next(code_iter, None)
        if nxt is not None:
            yield nxt
    yield from code_iter


class _Editor:
    """Word and line edits on a copy, keeping each line's indentation so code copies still look like code."""

    def __init__(self, text: str, vocab: list[str], rng: random.Random) -> None:
        self.lines: list[tuple[str, list[str]]] = []
        for line in text.splitlines():
            stripped = line.lstrip()
            self.lines.append((line[: len(line) - len(stripped)], stripped.split()))
        self.vocab = vocab
        self.rng = rng

    def text(self) -> str:
        return "\n".join(indent + " ".join(words) for indent, words in self.lines)

    def _word_slot(self) -> tuple[list[str], int]:
        non_empty = [words for _, words in self.lines if words]
        words = self.rng.choice(non_empty)
        return words, self.rng.randrange(len(words))

    def apply(self, count: int) -> None:
        for _ in range(count):
            op = self.rng.choices(("substitute", "insert", "delete", "move"), weights=(5, 2, 2, 1))[0]
            if op == "move" and len(self.lines) > 2:
                line = self.lines.pop(self.rng.randrange(len(self.lines)))
                self.lines.insert(self.rng.randrange(len(self.lines) + 1), line)
                continue
            words, i = self._word_slot()
            if op == "insert":
                words.insert(i, self.rng.choice(self.vocab))
            elif op == "delete" and sum(len(w) for _, w in self.lines) > NGRAM * 4:
                del words[i]
            else:
                words[i] = self.rng.choice(self.vocab)


def _edited_copy(base: str, base_sh: set[str], target: float, vocab: list[str], rng: random.Random) -> str:
    """Edit until the exact Jaccard reaches ``target`` or below. Each round applies about half the edits
    still estimated to be needed (an edit touches ~NGRAM shingles; J = (S-k)/(S+k) with k touched), so a
    copy takes a handful of Jaccard evaluations instead of one per edit."""
    editor = _Editor(base, vocab, rng)
    current = 1.0
    for _ in range(200):
        if current <= target:
            break
        size = len(base_sh)
        needed = size * ((1 - target) / (1 + target) - (1 - current) / (1 + current)) / NGRAM
        editor.apply(max(1, math.ceil(needed / 2)))
        current = jaccard(base_sh, shingles(editor.text()))
    return editor.text()


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_WORD_START = re.compile(r"\b[a-z]")


def _format_copy(base: str, rng: random.Random) -> str:
    """Same words, different case and spacing: what re-rendering a page does. Only ASCII letters change
    case, because some Unicode case mappings do not round-trip through lowercasing (``"ß".upper()``)."""
    upper = rng.random() < 0.5
    text = base.translate(_ASCII_UPPER) if upper else _WORD_START.sub(lambda m: m.group().upper(), base)
    return "\n\n".join("  ".join(line.split()) for line in text.splitlines())


def build_labelled_set(
    n_pairs: int = 400,
    n_singles: int = 200,
    *,
    seed: int = 0,
    jaccard_range: tuple[float, float] = (0.5, 1.0),
    format_share: float = 0.1,
) -> tuple[pa.Table, list[LabelledPair]]:
    """``n_pairs`` (base, edited copy) pairs plus ``n_singles`` unrelated documents, as a table in
    ``DOCUMENT_SCHEMA`` (rows shuffled, doc ids not revealing pairs) and the list of pair labels.

    Bases are captured on day 0 and copies on day 1 (from another source), so a keeper rule that prefers
    earlier captures keeps the base. Deterministic for a given seed and Python installation.
    """
    lo, hi = jaccard_range
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"jaccard_range must satisfy 0 <= low < high <= 1, got {jaccard_range}")
    rng = random.Random(seed)
    bases = _distinct_bases(_candidates(rng), n_pairs + n_singles)
    if len(bases) < n_pairs + n_singles:
        raise ValueError(
            f"only {len(bases)} distinct pieces found in this Python's stdlib; asked for {n_pairs + n_singles}"
        )
    vocab = sorted({w for _, text, _ in bases[:50] for w in text.split()})

    rows: list[dict] = []
    pending: list[tuple[int, int, str]] = []  # (base row, copy row, edit kind)

    def add(text: str, source: str, day: int, origin: str) -> int:
        rows.append(
            {"source_id": source, "locator": origin, "kind": "text", "text": text, "license": "PSF-2.0",
             "rights_tags": [], "domain": "code" if origin.startswith("stdlib:") else "reference",
             "language": "en", "capture_time": T0 + dt.timedelta(days=day)}
        )  # fmt: skip
        return len(rows) - 1

    for k, (origin, text, sh) in enumerate(bases):
        base_row = add(text, "python-docs", 0, origin)
        if k >= n_pairs:
            continue
        if rng.random() < format_share:
            copy, kind = _format_copy(text, rng), "format"
        else:
            copy, kind = _edited_copy(text, sh, rng.uniform(lo, hi), vocab, rng), "edit"
        pending.append((base_row, add(copy, "mirror", 1, f"{origin}#{kind}-copy"), kind))

    order = list(range(len(rows)))
    rng.shuffle(order)
    doc_id = {row: f"ld{pos:05d}" for pos, row in enumerate(order)}
    for row, r in enumerate(rows):
        r["doc_id"] = doc_id[row]
    table = pa.Table.from_pylist([rows[i] for i in order], schema=DOCUMENT_SCHEMA)
    pairs = [
        LabelledPair(doc_id[b], doc_id[c], jaccard(shingles(rows[b]["text"]), shingles(rows[c]["text"])), kind)
        for b, c, kind in pending
    ]
    return table, pairs


def keeper_of_from_clusters(clusters: pa.Table) -> dict[str, str]:
    """dropped doc_id -> the doc_id it was dropped for, from a table in ``DEDUPE_CLUSTER_SCHEMA``."""
    return dict(zip(clusters.column("doc_id").to_pylist(), clusters.column("kept_doc_id").to_pylist(), strict=True))


def cluster_root(keeper_of: Mapping[str, str], doc: str) -> str:
    """The survivor a doc's dropped -> keeper links end at. Tools may drop a doc for one that is itself
    dropped, so two docs share a cluster when their chains meet, not only when one names the other; a
    cycle (which no correct tool produces) stops at the first repeat instead of looping."""
    seen = set()
    while doc in keeper_of and doc not in seen:
        seen.add(doc)
        doc = keeper_of[doc]
    return doc


def score(
    docs: pa.Table,
    pairs: Iterable[LabelledPair],
    keeper_of: Mapping[str, str],
    threshold: float,
    margin: float = 0.05,
) -> Quality:
    """Precision over drops: a drop is correct when the exact Jaccard of the dropped doc and the doc it was
    dropped for reaches ``threshold`` (computed on the texts, so drops outside the labelled pairs are
    judged too). Recall over pairs whose truth is at least ``threshold + margin``: a pair counts as found
    when both docs end in the same cluster (following dropped -> keeper links). Pairs inside the margin are
    left out of recall because no sketch-based method can promise recall exactly at its threshold.
    """
    texts = dict(zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True))
    cache: dict[str, set[str]] = {}

    def sh(doc: str) -> set[str]:
        if doc not in cache:
            cache[doc] = shingles(texts[doc])
        return cache[doc]

    unknown = [d for d in (*keeper_of, *keeper_of.values()) if d not in texts]
    if unknown:
        raise ValueError(f"score: {len(unknown)} doc id(s) not in the labelled set, e.g. {unknown[:3]}")
    correct = sum(jaccard(sh(d), sh(k)) >= threshold for d, k in keeper_of.items())
    positives = merged_pos = negatives = merged_neg = 0
    for p in pairs:
        together = cluster_root(keeper_of, p.base_id) == cluster_root(keeper_of, p.copy_id)
        if p.jaccard >= threshold + margin:
            positives += 1
            merged_pos += together
        elif p.jaccard < threshold:
            negatives += 1
            merged_neg += together
    return Quality(threshold, len(keeper_of), correct, positives, merged_pos, negatives, merged_neg)
