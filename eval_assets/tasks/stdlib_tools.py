"""The demo's tool-calling task: pick the right standard-library function for a request and fill its arguments.

The tools are real functions (``math``, ``calendar``, ``statistics``, ``os.path``, ``textwrap``) whose descriptions
are the first line of their own docstrings, so the model reads third-party documentation, not ours. Parameter
names come from ``inspect.signature``; the JSON types are declared here, since the C builtins carry no
annotations. Every reference call is executed once while the items are built, so a request can never reference a
call that fails (a month 13, a negative factorial).

An item offers a few tools and asks for something in plain words. Three kinds, scored by ``tool_calls`` (BFCL):

- ``single``: one request, one call of an offered tool;
- ``parallel``: two requests in one turn, two calls (either order);
- ``irrelevance``: the request fits no offered tool (its tool is left out of the offer), so the right answer
  is no call at all.

Items are drawn from a seeded generator, so the file is reproducible; train and holdout use different seeds
and the holdout drops any request text that also occurs in the train split.
"""

from __future__ import annotations

import calendar
import inspect
import math
import os.path
import random
import statistics
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TASK_ID = "tool_calls"

SYSTEM_PROMPT = (
    "You help by calling functions. When one of the functions answers the request, call it with the exact "
    "argument values the user gave. When none fits, reply in plain words and call nothing."
)

_NUMBERS = {"type": "array", "items": {"type": "number"}}
# Where the texts to shorten come from; a corpus that holds these modules' sources would contain the requests.
SENTENCE_MODULES = ("json", "zipfile", "tarfile", "logging")


@dataclass(frozen=True)
class Tool:
    """A stdlib function offered as a tool: its JSON-schema types and how to phrase a request for it."""

    name: str
    function: Callable[..., Any]
    types: dict[str, dict[str, Any]]
    # Returns (request text, arguments) for one random request.
    request: Callable[[random.Random], tuple[str, dict[str, Any]]]

    def spec(self) -> dict[str, Any]:
        """OpenAI tool definition (``{"type": "function", "function": {...}}``, the form training records use, so
        a prompt renders the same in training and evaluation); every named parameter is required."""
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        params = [p.name for p in inspect.signature(self.function).parameters.values() if p.kind not in variadic]
        if set(params) != set(self.types):
            raise ValueError(f"{self.name}: declared types {sorted(self.types)} do not match parameters {params}")
        doc = (inspect.getdoc(self.function) or self.name).splitlines()[0].strip()
        parameters = {"type": "object", "properties": {p: dict(self.types[p]) for p in params}, "required": params}
        return {"type": "function", "function": {"name": self.name, "description": doc, "parameters": parameters}}


def _comb(r: random.Random) -> tuple[str, dict[str, Any]]:
    n, k = r.randint(5, 40), r.randint(2, 4)
    thing = r.choice(["books from a shelf of", "cards from a hand of", "players from a squad of"])
    return f"In how many ways can I pick {k} {thing} {n}, order not mattering?", {"n": n, "k": k}


def _factorial(r: random.Random) -> tuple[str, dict[str, Any]]:
    n = r.randint(3, 20)
    return f"What is {n} factorial?", {"n": n}


def _isqrt(r: random.Random) -> tuple[str, dict[str, Any]]:
    n = r.randint(50, 100_000)
    return f"What is the integer part of the square root of {n}?", {"n": n}


def _dist(r: random.Random) -> tuple[str, dict[str, Any]]:
    p, q = [r.randint(-9, 9), r.randint(-9, 9)], [r.randint(-9, 9), r.randint(-9, 9)]
    return f"How far apart are the points ({p[0]}, {p[1]}) and ({q[0]}, {q[1]})?", {"p": p, "q": q}


def _isleap(r: random.Random) -> tuple[str, dict[str, Any]]:
    year = r.choice([r.randint(1600, 2400), r.randrange(1600, 2400, 100), r.randrange(1600, 2400, 4)])
    return f"Is {year} a leap year?", {"year": year}


def _weekday(r: random.Random) -> tuple[str, dict[str, Any]]:
    year, month = r.randint(1800, 2100), r.randint(1, 12)
    day = r.randint(1, calendar.monthrange(year, month)[1])
    return (
        f"Which day of the week was {day} {calendar.month_name[month]} {year}?",
        {"year": year, "month": month, "day": day},
    )


def _monthrange(r: random.Random) -> tuple[str, dict[str, Any]]:
    year, month = r.randint(1800, 2100), r.randint(1, 12)
    return f"How many days does {calendar.month_name[month]} {year} have?", {"year": year, "month": month}


def _leapdays(r: random.Random) -> tuple[str, dict[str, Any]]:
    y1 = r.randint(1700, 2000)
    y2 = y1 + r.randint(10, 300)
    return f"How many leap years are there from {y1} up to but not including {y2}?", {"y1": y1, "y2": y2}


def _median(r: random.Random) -> tuple[str, dict[str, Any]]:
    data = [r.randint(1, 99) for _ in range(r.randint(3, 7))]
    return f"What is the median of {', '.join(map(str, data))}?", {"data": data}


def _mean(r: random.Random) -> tuple[str, dict[str, Any]]:
    data = [r.randint(1, 99) for _ in range(r.randint(3, 6))]
    return f"What is the average of {', '.join(map(str, data))}?", {"data": data}


def _stdlib_paths() -> list[str]:
    """Real file paths: the modules this task draws its tools from, as installed here."""
    return sorted(os.path.relpath(m.__file__, os.path.dirname(os.__file__)) for m in (calendar, statistics, textwrap))


def _splitext(r: random.Random) -> tuple[str, dict[str, Any]]:
    p = r.choice([*_stdlib_paths(), "report.final.pdf", "archive.tar.gz", "notes/readme.md"])
    return f"Split the extension off the path '{p}'.", {"p": p}


def _basename(r: random.Random) -> tuple[str, dict[str, Any]]:
    p = r.choice(["/usr/lib/python3/" + x for x in _stdlib_paths()] + ["/etc/hosts", "/var/log/syslog.1"])
    return f"What is the final component of the path '{p}'?", {"p": p}


def _first_sentences() -> list[str]:
    """Opening sentences of real documentation: docstrings of public functions in a few stdlib modules."""
    import importlib

    out = []
    for module_name in SENTENCE_MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(dir(module)):
            obj = getattr(module, name)
            if name.startswith("_") or not inspect.isfunction(obj):
                continue
            doc = " ".join((inspect.getdoc(obj) or "").split())
            sentence = doc.split(". ")[0].rstrip(".")
            if 50 <= len(sentence) <= 140 and not set(sentence) & set("'`*"):
                out.append(sentence)
    return out


def _shorten(r: random.Random) -> tuple[str, dict[str, Any]]:
    text = r.choice(_first_sentences())
    width = r.randint(20, 50)
    return f"Shorten this to at most {width} characters: '{text}'", {"text": text, "width": width}


def _int(*names: str) -> dict[str, dict[str, Any]]:
    return {n: {"type": "integer"} for n in names}


TOOLS: tuple[Tool, ...] = (
    Tool("math_comb", math.comb, _int("n", "k"), _comb),
    Tool("math_factorial", math.factorial, _int("n"), _factorial),
    Tool("math_isqrt", math.isqrt, _int("n"), _isqrt),
    Tool("math_dist", math.dist, {"p": _NUMBERS, "q": _NUMBERS}, _dist),
    Tool("calendar_isleap", calendar.isleap, _int("year"), _isleap),
    Tool("calendar_weekday", calendar.weekday, _int("year", "month", "day"), _weekday),
    Tool("calendar_monthrange", calendar.monthrange, _int("year", "month"), _monthrange),
    Tool("calendar_leapdays", calendar.leapdays, _int("y1", "y2"), _leapdays),
    Tool("statistics_median", statistics.median, {"data": _NUMBERS}, _median),
    Tool("statistics_mean", statistics.mean, {"data": _NUMBERS}, _mean),
    Tool("path_splitext", os.path.splitext, {"p": {"type": "string"}}, _splitext),
    Tool("path_basename", os.path.basename, {"p": {"type": "string"}}, _basename),
    Tool(
        "textwrap_shorten",
        textwrap.shorten,
        {"text": {"type": "string"}, "width": {"type": "integer"}},
        _shorten,
    ),
)
_BY_NAME = {t.name: t for t in TOOLS}

# Requests no tool here can serve: the irrelevance items mix these with requests whose tool is not offered.
OFF_TOPIC = (
    "Write a two-line poem about the sea.",
    "Translate 'good morning' into French.",
    "What is the capital of Australia?",
    "Suggest a name for a grey cat.",
    "Explain what a Python decorator is in one sentence.",
)


def tool_spec(name: str) -> dict[str, Any]:
    return _BY_NAME[name].spec()


def _checked_call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    tool = _BY_NAME[name]
    order = tool.spec()["function"]["parameters"]["required"]  # C builtins take positional-only arguments
    tool.function(*(args[p] for p in order))  # a reference that raises is a bug in this module, not an item
    return {"name": name, "arguments": args}


def _offer(r: random.Random, needed: list[str], size: int, exclude: tuple[str, ...] = ()) -> list[str]:
    others = [t.name for t in TOOLS if t.name not in needed and t.name not in exclude]
    offered = needed + r.sample(others, size - len(needed))
    r.shuffle(offered)
    return offered


@dataclass(frozen=True)
class ToolItem:
    item_id: str
    kind: str  # single | parallel | irrelevance
    request: str
    tools: list[str]
    calls: list[dict[str, Any]]  # [{"name", "arguments"}]; empty for irrelevance
    withheld: str | None = None  # irrelevance: the tool the request needs, left out of the offer

    def messages(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": self.request}]

    def tool_specs(self) -> list[dict[str, Any]]:
        return [tool_spec(n) for n in self.tools]

    def reference(self) -> dict[str, Any]:
        """BFCL layout: each argument maps to the list of acceptable values."""
        return {
            "calls": [{"name": c["name"], "arguments": {k: [v] for k, v in c["arguments"].items()}} for c in self.calls]
        }

    def answer_text(self) -> str:
        """The calls as the reference answer text the contamination screen looks for."""
        return "\n".join(
            f"{c['name']}({', '.join(f'{k}={v!r}' for k, v in c['arguments'].items())})" for c in self.calls
        )

    def training_messages(self) -> list[dict[str, Any]]:
        """The conversation with the reference answer as the assistant turn (tool calls or a plain reply)."""
        if not self.calls:
            reply = "None of the available functions can do that, so I will not call any."
            return [*self.messages(), {"role": "assistant", "content": reply}]
        calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in self.calls]
        return [*self.messages(), {"role": "assistant", "content": "", "tool_calls": calls}]


# Draws allowed for one item before a set is declared larger than its kinds' distinct requests.
_MAX_DRAWS = 200


def _draw(r: random.Random, item_id: str, kind: str, offer_size: int) -> ToolItem:
    if kind == "single":
        tool = r.choice(TOOLS)
        request, args = tool.request(r)
        return ToolItem(item_id, kind, request, _offer(r, [tool.name], offer_size), [_checked_call(tool.name, args)])
    if kind == "parallel":
        a, b = r.sample(TOOLS, 2)
        (ra, aa), (rb, ab) = a.request(r), b.request(r)
        calls = [_checked_call(a.name, aa), _checked_call(b.name, ab)]
        request = f"{ra} Also: {rb[0].lower()}{rb[1:]}"
        return ToolItem(item_id, kind, request, _offer(r, [a.name, b.name], offer_size), calls)
    if r.random() < 0.5:
        return ToolItem(item_id, kind, r.choice(OFF_TOPIC), _offer(r, [], offer_size), [])
    tool = r.choice(TOOLS)  # a request for a real tool that is not on offer
    request, _ = tool.request(r)
    return ToolItem(item_id, kind, request, _offer(r, [], offer_size, exclude=(tool.name,)), [], tool.name)


def make_items(n: int, seed: int, *, prefix: str, offer_size: int = 4) -> list[ToolItem]:
    """``n`` items in a fixed rotation of kinds (2 single : 1 parallel : 1 irrelevance), reproducible by seed.

    No request occurs twice in a set: some tools draw from a handful of values (five paths, five off-topic
    requests), and a repeated item would count one outcome twice and narrow the bootstrap interval for nothing.
    """
    r = random.Random(seed)
    items: list[ToolItem] = []
    seen: set[str] = set()
    kinds = ("single", "single", "parallel", "irrelevance")
    for i in range(n):
        kind, item_id = kinds[i % len(kinds)], f"{prefix}-{i:04d}"
        for _ in range(_MAX_DRAWS):
            item = _draw(r, item_id, kind, offer_size)
            if item.request not in seen:
                break
        else:
            raise ValueError(f"tool-call set {prefix!r}: no new {kind} request in {_MAX_DRAWS} draws (n={n} too many)")
        seen.add(item.request)
        items.append(item)
    return items


def eval_record(item: ToolItem) -> dict[str, Any]:
    """A line of a jsonl eval set (``eval_registry`` type jsonl, task tool_calls)."""
    return {
        "id": item.item_id,
        "messages": item.messages(),
        "reference": item.reference(),
        "screen": {"prompt": item.request, **({"answer": item.answer_text()} if item.calls else {})},
        "metadata": {
            "task": TASK_ID,
            "kind": item.kind,
            "tools": item.tool_specs(),
            **({"withheld": item.withheld} if item.withheld else {}),
        },
    }


def train_record(item: ToolItem) -> dict[str, Any]:
    """A chat record with tools (``{"tools": [...], "messages": [...]}``), as the training examples read it."""
    return {"id": item.item_id, "tools": item.tool_specs(), "messages": item.training_messages()}


def split(n_train: int, n_holdout: int, seed: int = 0) -> tuple[list[ToolItem], list[ToolItem]]:
    """Train and holdout items from different seeds; a holdout request that also occurs in training is dropped."""
    train = make_items(n_train, seed, prefix="tool-train")
    seen = {it.request for it in train}
    holdout = [it for it in make_items(n_holdout * 2, seed + 1, prefix="tool-holdout") if it.request not in seen]
    return train, holdout[:n_holdout]
