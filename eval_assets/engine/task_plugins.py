"""Evaluation tasks from outside the package: installed ones (entry point group ``mixtrain.eval_tasks``, named by
the entry point) and a project's own (``evaluation.tasks: {name: "package.module:name"}`` in mixtrain.yaml).

A task is an :class:`EvalTask`: it scores one reply of a model to one eval item. Its name is a suite (listed in
``evaluation.suites``) and the ``task`` of the eval sets it scores (JSON lines like every task holdout: ``id``,
``messages``, ``reference``, ``screen``, ``metadata``), so the items are frozen in the registry and screened for
contamination like the built-in tasks'. The suite made of it (:func:`task_suite`) generates each item's greedy
reply with the shared generation code, calls ``score`` and keeps one RUN_ITEM_SCHEMA row per item with the score
in ``task_score``; its metric ``<name>_score`` (the mean) is compared item by item with the paired bootstrap and
can be a release gate criterion like any built-in metric.

What is loaded is checked before any model runs, with a message naming where it was registered; a task's name,
version and module code go into the run fingerprint and the eval spec's data version, so changing a task
re-evaluates. The suite follows the robustness rules of every suite: a ``score`` that raises, or returns something
that is not a finite number, is that item's error (score 0), never the run's.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from eval_assets.engine.evaluate import Generation
from eval_assets.engine.suites.registry import SUITES, ItemMetric, Suite, raw_reference
from eval_assets.engine.suites.rows import (
    chat_render,
    conversation,
    dumps,
    generate_items,
    generation_reason,
    generation_rows,
    generation_summary,
    json_or_text,
    lenient_metadata,
    mean,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings
from mixtrain.config.evaluation import BUILT_IN_SUITES, BUILT_IN_TASKS, EVAL_TASKS_GROUP, TASK_NAME
from mixtrain.config.plugins import PluginError, code_sha256, describe, import_object, load_entry_points

_KIND = "an EvalTask (an EvalTask instance, an EvalTask subclass, or a factory returning one)"


@dataclass(frozen=True)
class TaskItem:
    """One eval item as a task sees it: its chat messages, its reference (parsed JSON, or the text) and metadata."""

    item_id: str
    eval_set: str
    messages: list[dict[str, Any]]
    reference: Any
    metadata: dict[str, Any]


@dataclass(frozen=True)
class TaskScore:
    """A score with the reason it is not full marks and any detail worth keeping (stored as JSON in ``details``)."""

    value: float
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class EvalTask(ABC):
    version: ClassVar[int] = 1  # bump when scoring changes in a way the module's code hash would not show
    higher_is_better: ClassVar[bool] = True

    @abstractmethod
    def score(self, item: TaskItem, output: str) -> float | TaskScore:
        """The score of ``output``, the model's reply to ``item`` (a bool counts as 0 or 1)."""


def as_task(obj: Any, where: str) -> EvalTask:
    """The task ``obj`` stands for: an instance, a subclass built without arguments, or a factory's result."""
    if isinstance(obj, EvalTask):
        task = obj
    elif inspect.isclass(obj) and not issubclass(obj, EvalTask):
        raise PluginError(f"{where}: {describe(obj)} is not a subclass of eval_assets.engine.task_plugins.EvalTask")
    elif inspect.isclass(obj) and inspect.isabstract(obj):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise PluginError(f"{where}: {describe(obj)} is abstract (it does not define {missing})")
    elif callable(obj):
        try:
            task = obj()
        except Exception as e:
            raise PluginError(
                f"{where}: calling {describe(obj)} without arguments failed: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(task, EvalTask):
            raise PluginError(f"{where}: {describe(obj)} returned {describe(task)}, not an EvalTask")
    else:
        raise PluginError(f"{where}: {describe(obj)} is not {_KIND}")
    if not isinstance(task.version, int) or isinstance(task.version, bool):
        raise PluginError(f"{where}: the task's version must be an int, got {task.version!r}")
    return task


def _check_name(name: str, where: str) -> None:
    if not re.match(TASK_NAME, name):
        raise PluginError(f"{where}: a task name is lower-case letters, digits and '_', starting with a letter")
    if name in BUILT_IN_TASKS or name in BUILT_IN_SUITES:
        raise PluginError(f"{where}: '{name}' is a built-in task or suite; register the plugin under another name")


@functools.cache
def installed() -> tuple[tuple[str, EvalTask, str], ...]:
    """``(name, task, where)`` of the ``mixtrain.eval_tasks`` entry points (loaded once per process;
    ``installed.cache_clear()`` looks again)."""
    out = []
    for name, where, obj in load_entry_points(EVAL_TASKS_GROUP):
        _check_name(name, where)
        out.append((name, as_task(obj, where), where))
    return tuple(out)


def plugin_tasks(configured: Sequence[tuple[str, str]] = ()) -> dict[str, tuple[EvalTask, str]]:
    """Every plugin task by name with where it was registered: the installed ones and ``configured``
    (``evaluation.tasks`` as ``(name, import path)``); one name registered twice is an error."""
    found: dict[str, tuple[EvalTask, str]] = {}
    for name, task, where in installed():
        if name in found:
            raise PluginError(f"{where}: task '{name}' is registered twice (also {found[name][1]})")
        found[name] = (task, where)
    for name, path in configured:
        where = f"field 'evaluation.tasks.{name}' ('{path}')"
        if name in found:
            raise PluginError(f"{where}: task '{name}' is registered twice (also {found[name][1]})")
        _check_name(name, where)
        try:
            obj = import_object(path)
        except PluginError as e:
            raise PluginError(f"{where}: {e}") from None
        found[name] = (as_task(obj, where), where)
    return found


def suite_table(configured: Sequence[tuple[str, str]] = ()) -> dict[str, Suite]:
    """The built-in suites and one per plugin task: what an evaluation can run."""
    return {**SUITES, **{name: task_suite(name, task) for name, (task, _) in plugin_tasks(configured).items()}}


def task_fingerprints(names: Sequence[str], configured: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Where each plugin task among ``names`` was registered, its version and its module's code (built-in suites
    are left out)."""
    tasks = plugin_tasks(configured)
    return {
        n: {"where": tasks[n][1], "version": tasks[n][0].version, "code": code_sha256(tasks[n][0])}
        for n in sorted(names)
        if n in tasks
    }


def task_item(row: Mapping[str, Any]) -> TaskItem:
    return TaskItem(
        item_id=row["item_id"],
        eval_set=row.get("eval_set") or "",
        messages=conversation(row.get("prompt") or ""),
        reference=json_or_text(row.get("reference") or ""),
        metadata=lenient_metadata(row.get("metadata")),
    )


def _unpack(result: Any) -> TaskScore:
    if isinstance(result, TaskScore):
        score = result
    elif isinstance(result, bool | int | float):
        score = TaskScore(float(result))
    else:
        raise TypeError(f"score() returned {describe(result)}, not a number or a TaskScore")
    if isinstance(score.value, bool) or not isinstance(score.value, int | float) or not math.isfinite(score.value):
        raise ValueError(f"score() gave {score.value!r}, not a finite number")
    return score


def score_task(
    name: str,
    task: EvalTask,
    items: pa.Table,
    generations: Sequence[Generation],
    *,
    model_label: str = "model",
    length_buckets: Sequence[int] = EvalSettings.length_buckets,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows for a plugin task's items from their generations: ``task_score`` is the task's score,
    0 where generation or scoring failed (with the reason or error)."""
    rows = []
    for item, gen, row in generation_rows(name, model_label, items, generations, length_buckets):
        if gen.error is not None:
            row.update(task_score=0.0, reason=generation_reason(gen, None))
        else:
            try:
                scored = _unpack(task.score(task_item(item), gen.output))
                details = dumps(dict(scored.details)) if scored.details else None
                row.update(
                    task_score=float(scored.value), reason=generation_reason(gen, scored.reason), details=details
                )
            except Exception as e:
                row.update(task_score=0.0, error=f"scoring failed: {e!r}", reason="not scored")
        rows.append(row)
    return to_table(rows)


def summarise_task(metric: str, table: pa.Table) -> dict[str, float]:
    rows = table.to_pylist()
    return {**generation_summary(rows), metric: mean([r["task_score"] for r in rows])}


def run_task(
    name: str, task: EvalTask, model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str
) -> tuple[pa.Table, dict[str, float]]:
    gens = generate_items(model, tokenizer, items, settings, chat_render(tokenizer))
    table = score_task(name, task, items, gens, model_label=model_label, length_buckets=settings.length_buckets)
    return table, summarise_task(f"{name}_score", table)


def task_suite(name: str, task: EvalTask) -> Suite:
    """The suite of a plugin task: its metric ``<name>_score`` (the item mean), sliced by prompt length."""
    metric = f"{name}_score"
    return Suite(
        name,
        functools.partial(run_task, name, task),
        functools.partial(summarise_task, metric),
        ("length_bucket",),
        (ItemMetric(metric, "task_score", higher_is_better=task.higher_is_better),),
        {"truncated_rate": False},
        reference_text=raw_reference,
    )
