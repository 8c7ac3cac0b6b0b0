"""A deterministic, realistic one-source corpus for timing the gate and proving its outputs unchanged.

``realistic_corpus(n, seed)`` mixes what a crawled prose source holds: real English paragraphs (CPython's
``pydoc_data.topics`` and stdlib docstrings), pages framed by a site header and footer (boilerplate), random
Zipf-word pages as ``bench_gate_stream`` makes them, the demo's gate-tripping pages (web crawl, forum posts),
personal data (e-mails, phones, IPs, cards, SSNs, keys), other languages, and the edge cases the rules must
survive (empty and blank text, CRLF, emoji, control characters, U+FFFD, lorem ipsum, bullets, braces, very long
lines, re-cased exact copies). The same ``(n, seed)`` gives the same table on every run.

Run ``python benchmarks/gate_corpus.py OUT.parquet [--docs 10000] [--seed 0]`` to write it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOURCE = "web"
HEADER = "Acme Daily News  -  independent reporting since 1921  -  all rights reserved"
FOOTER = "Subscribe to our newsletter for more stories like this one"
_STDLIB_MODULES = (
    "argparse", "ast", "asyncio.base_events", "calendar", "collections", "csv", "dataclasses", "datetime",
    "decimal", "email.message", "fractions", "functools", "http.client", "inspect", "json.decoder", "logging",
    "pathlib", "pickle", "random", "shutil", "socket", "statistics", "string", "subprocess", "tarfile",
    "textwrap", "threading", "typing", "unittest.case", "urllib.parse", "zipfile",
)  # fmt: skip
_FOREIGN = (
    "Die Stadtverwaltung hat am Montag neue Regeln für die Nutzung der öffentlichen Gärten beschlossen. "
    "Die Anwohner können ihre Anträge bis Ende des Monats einreichen, und die Entscheidung fällt im Frühjahr.",
    "Le conseil municipal a adopté lundi de nouvelles règles pour l'utilisation des jardins publics. Les "
    "habitants peuvent déposer leur demande jusqu'à la fin du mois, et la décision sera prise au printemps.",
    "El ayuntamiento aprobó el lunes nuevas normas para el uso de los huertos públicos. Los vecinos pueden "
    "presentar sus solicitudes hasta final de mes y la decisión se tomará en primavera.",
    "Il consiglio comunale ha approvato lunedì nuove regole per l'uso degli orti pubblici. I residenti possono "
    "presentare le domande entro la fine del mese e la decisione sarà presa in primavera.",
    "市议会周一通过了关于公共菜园使用的新规定。居民可以在月底前提交申请，决定将于春季作出。",  # noqa: RUF001
    "Городской совет в понедельник принял новые правила пользования общественными огородами. Жители могут "
    "подать заявления до конца месяца, а решение будет принято весной.",  # noqa: RUF001
)
_PII = (
    "Write to jane.doe{i}@example.com for the minutes.",
    "Call the office on (415) 555-{i:04d} between nine and five.",
    "The server at 192.168.{a}.{b} answered the ping.",
    "Card on file: 4111 1111 1111 1111, expires soon.",
    "His SSN 123-45-{i:04d} was printed on the form.",
    "Reach me on +44 20 7946 {i:04d} or mail ops{i}@mail.example.org.",
    "The key AKIAIOSFODNN7EXAMPLE was committed by mistake.",
    "IBAN GB82 WEST 1234 5698 7654 32 for the deposit.",
)
_ODD = (
    "",
    "   \n\t  ",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.",
    "Short one.",
    "Line one of a windows file.\r\nLine two follows it here.\r\nAnd a third line closes the file.\r\n",
    "Emoji everywhere 😀🎉 in this post about the harvest festival 🍎🍐 and the prize marrow 🏆 of the year.",
    "A control\x07 character and a \x00 null slipped into this scraped page about the allotment rules.",
    "Mis-decoded \ufffd\ufffd text \ufffd with replacement \ufffd characters \ufffd everywhere \ufffd here.",
    "- Home\n- News\n- Plots\n- Events\n- Contact\n- Shop\n- Login\n",
    "Read more...\nSee the gallery...\nOlder posts...\nNewer posts...\n",
    "function f(x) { return {a: x, b: {c: x}}; } var y = {}; if (y) { f(y); }",
    "#tag #garden #food #life #love #summer #fun #happy #sun #green #grow",
)


def _sibling(name: str) -> Any:
    path = ROOT / "examples" / "demo" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gate_corpus_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _paragraphs() -> list[str]:
    """Real English paragraphs: the pydoc topics split at blank lines, and stdlib docstrings."""
    import importlib
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        out += [p.strip() for p in topics[key].split("\n\n") if len(p.strip()) > 80]
    for name in _STDLIB_MODULES:
        module = importlib.import_module(name)
        source = Path(module.__file__).read_text(encoding="utf-8")  # type: ignore[arg-type]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef | ast.Module):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    out += [p.strip() for p in doc.split("\n\n") if len(p.strip()) > 40]
    return out


def realistic_corpus(n: int, seed: int = 0) -> Any:
    """``n`` documents of one prose source as a DOCUMENT_SCHEMA table (see the module docstring)."""
    import numpy as np
    import pyarrow as pa

    from benchmarks.bench_gate_dedupe import draw_words, make_vocab, render
    from benchmarks.labelled_neardup import T0
    from mixassets.engine.readers import doc_id_for
    from mixtrain.schema import DOCUMENT_SCHEMA

    rng = np.random.default_rng(seed)
    vocab, cdf = make_vocab(rng)
    paragraphs = _paragraphs()
    crawl = [r["text"] for r in _sibling("web_crawl").crawl_records()]
    forum = [*_sibling("gate_documents").FORUM_POSTS, *_sibling("gate_documents").PII_POSTS]
    texts: list[str] = []
    for i in range(n):
        roll = rng.random()
        if texts and roll < 0.03:  # an exact copy, re-cased and re-spaced but for the banners
            lines = texts[int(rng.integers(len(texts)))].split("\n")
            text = "\n".join(ln if ln in (HEADER, FOOTER) else "  ".join(ln.upper().split(" ")) for ln in lines)
        elif roll < 0.35:
            text = render(draw_words(rng, vocab, cdf), rng)
        elif roll < 0.85:
            picked = rng.choice(len(paragraphs), int(rng.integers(2, 9)), replace=False)
            text = "\n\n".join(paragraphs[j] for j in picked)
        elif roll < 0.90:
            text = crawl[int(rng.integers(len(crawl)))] + f"\n\nPage {i}."
        elif roll < 0.93:
            text = forum[int(rng.integers(len(forum)))]
        elif roll < 0.95:
            text = " ".join(_FOREIGN[int(rng.integers(len(_FOREIGN)))] for _ in range(int(rng.integers(1, 4))))
        elif roll < 0.975:
            text = _ODD[int(rng.integers(len(_ODD)))]
            if rng.random() < 0.5:
                text = f"{text}\n" + paragraphs[int(rng.integers(len(paragraphs)))]
        elif roll < 0.98:
            text = "x" * int(rng.integers(5_000, 30_000)) + " " + paragraphs[int(rng.integers(len(paragraphs)))]
        else:
            picked = rng.choice(len(paragraphs), 3, replace=False)
            text = "\n\n".join(paragraphs[j] for j in picked)
        if rng.random() < 0.08:
            pii = _PII[int(rng.integers(len(_PII)))].format(i=i % 10_000, a=i % 250, b=(i * 7) % 250)
            text = f"{text}\n{pii}" if text else pii
        if text.strip() and rng.random() < 0.5:
            text = f"{HEADER}\n{text}\n{FOOTER}\n"
        texts.append(text)
    rows = []
    for i, text in enumerate(texts):
        locator = f"{SOURCE}.jsonl:{i + 1}"
        rows.append({"doc_id": doc_id_for(SOURCE, locator), "source_id": SOURCE, "locator": locator,
                     "kind": "text", "text": text, "license": "CC-BY-4.0", "rights_tags": [],
                     "domain": "general", "language": "en", "capture_time": T0})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def realistic_spec() -> Any:
    """The source the corpus belongs to: English prose with the default gating rules and PII redacted."""
    from mixtrain.config.data import SourceSpec

    return SourceSpec.model_validate(
        {"id": SOURCE, "path": f"{SOURCE}.jsonl", "format": "jsonl", "license": "CC-BY-4.0", "pii_policy": "redact"}
    )


def main() -> None:
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    table = realistic_corpus(args.docs, args.seed)
    pq.write_table(table, args.out)
    mb = sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6
    print(f"{table.num_rows} documents, {mb:.2f} MB of text -> {args.out}")


if __name__ == "__main__":
    main()
