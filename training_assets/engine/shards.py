"""The mixture as a training process reads it: streamed in record batches, first as a text-free index, then the
token ids of the examples this process trains on, and nothing else.

A step's batch plan (``batching``) and packing plan (``packing.pack_plan``) need only each example's length and
curriculum phase, so those are what the first pass keeps. Under data parallelism the first pass is shared: rank
r tokenizes record batches r, r + N, ... and the ranks exchange their (small) indexes, so every rank plans the
same run. The second pass reads the records behind the rank's own micro-batches (``StepBatches.items_of_rank``)
and tokenizes those again; a rank never holds the mixture's texts, and holds the tokens of its share only. A
single process keeps the tokens from the first pass instead of reading twice.

Record numbers are the mixture table's row order, the same in every pass and on every rank; an example is named
by the record it came from (a record gives at most one).

API:
    record_batches(source, batch_rows) -> iterator of (first record number, records)
    scan_mixture(source, tokenizer, max_seq_len, *, phase_order, world, keep_tokens) -> MixtureIndex
    MixtureIndex.load(source, tokenizer, examples)     token ids of those examples (by position in the index)
    MixtureIndex.example(i) -> {"input_ids", "labels", "record"}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from training_assets.engine.batching import phase_indices
from training_assets.engine.distributed import World
from training_assets.engine.examples import prepare_examples
from training_assets.engine.tool_template import ChatTemplate

# The mixture columns training reads: the record itself and its curriculum phase.
RECORD_COLUMNS = ("kind", "text", "messages", "phase")
BATCH_ROWS = 1024

Source = str | Sequence[dict[str, Any]]


def record_batches(source: Source, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """``(first record number, records)`` of a mixture Parquet file (only the columns training reads, one
    record batch at a time) or of records already in memory."""
    if isinstance(source, str):
        import pyarrow.parquet as pq

        with pq.ParquetFile(source) as f:
            columns = [c for c in RECORD_COLUMNS if c in f.schema_arrow.names]
            first = 0
            for batch in f.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
                yield first, batch.to_pylist()
                first += batch.num_rows
        return
    for first in range(0, len(source), batch_rows):
        yield first, list(source[first : first + batch_rows])


@dataclass
class _BatchIndex:
    """What the first pass keeps of one record batch (picklable, exchanged between ranks)."""

    number: int
    records: int
    phase_names: list[str]  # in order of first appearance in the batch
    example_records: list[int]
    example_lengths: list[int]
    example_phases: list[str]
    stats: dict[str, int]
    templates: dict[str, ChatTemplate]
    tokens: dict[int, dict[str, Any]] | None = None  # record -> example, when this process keeps them


@dataclass
class MixtureIndex:
    records: int
    example_records: list[int]  # ascending record numbers, one per example
    lengths: list[int]
    phases: list[int]  # index into phase_names
    phase_names: list[str]
    stats: dict[str, int]
    templates: dict[str, ChatTemplate]
    max_seq_len: int
    _tokens: dict[int, dict[str, Any]] = field(default_factory=dict)  # record -> example

    def templates_manifest(self) -> dict[str, dict[str, Any]]:
        return {kind: t.manifest() for kind, t in sorted(self.templates.items())}

    def example(self, i: int) -> dict[str, Any]:
        record = self.example_records[i]
        try:
            return self._tokens[record]
        except KeyError:
            raise KeyError(f"example {i} (record {record}) was not loaded by this process") from None

    def load(self, source: Source, tokenizer: Any, examples: Iterable[int], batch_rows: int = BATCH_ROWS) -> None:
        """Tokenize the records behind ``examples`` (positions in this index) that are not held yet."""
        wanted = sorted({self.example_records[i] for i in examples} - self._tokens.keys())
        if not wanted:
            return
        k = 0
        for first, records in record_batches(source, batch_rows):
            end = first + len(records)
            picked = []
            while k < len(wanted) and wanted[k] < end:
                picked.append(wanted[k])
                k += 1
            if picked:
                chosen = [records[r - first] for r in picked]
                prepared = prepare_examples(chosen, tokenizer, self.max_seq_len, indices=picked)
                self._tokens.update((e["record"], e) for e in prepared.examples)
            if k == len(wanted):
                break
        missing = [r for r in wanted if r not in self._tokens]
        if missing:
            raise RuntimeError(
                f"records {missing[:5]} gave no example on the second read of the mixture: it changed while training"
            )


def _index_batch(
    number: int, first: int, records: list[dict[str, Any]], tokenizer: Any, max_seq_len: int,
    phase_order: Sequence[str] | None, keep_tokens: bool,
) -> _BatchIndex:  # fmt: skip
    try:
        local_phase, names = phase_indices(records, phase_order)
    except ValueError as e:  # name the mixture's record number, not the batch's
        raise ValueError(f"{e} (records {first}..{first + len(records) - 1} of the mixture)") from e
    prepared = prepare_examples(records, tokenizer, max_seq_len, indices=range(first, first + len(records)))
    examples = prepared.examples
    return _BatchIndex(
        number=number,
        records=len(records),
        phase_names=names,
        example_records=[e["record"] for e in examples],
        example_lengths=[len(e["input_ids"]) for e in examples],
        example_phases=[names[local_phase[e["record"] - first]] for e in examples],
        stats=prepared.stats,
        templates=prepared.templates,
        tokens={e["record"]: e for e in examples} if keep_tokens else None,
    )


def _gather(mine: list[_BatchIndex], world: World) -> list[_BatchIndex]:
    if not world.distributed:
        return mine
    import torch.distributed as dist

    everyone: list[list[_BatchIndex] | None] = [None] * world.size
    dist.all_gather_object(everyone, mine)
    return sorted((b for part in everyone for b in part or ()), key=lambda b: b.number)


def scan_mixture(
    source: Source,
    tokenizer: Any,
    max_seq_len: int,
    *,
    phase_order: Sequence[str] | None = None,
    world: World | None = None,
    keep_tokens: bool | None = None,
    batch_rows: int = BATCH_ROWS,
) -> MixtureIndex:
    """The first pass: every example's record, length and phase, the counts and the chat templates used.

    Phases follow ``phase_order`` (the mixture spec's curriculum) or, without it, their first appearance in the
    table, as ``batching.phase_indices`` orders them. ``keep_tokens`` (default: when this is the only process)
    keeps the token ids too, so that no second pass is needed.
    """
    world = world or World()
    keep = (not world.distributed) if keep_tokens is None else keep_tokens
    mine = [
        _index_batch(number, first, records, tokenizer, max_seq_len, phase_order, keep)
        for number, (first, records) in enumerate(record_batches(source, batch_rows))
        if number % world.size == world.rank
    ]
    batches = _gather(mine, world)
    names: list[str] = list(phase_order) if phase_order is not None else []
    for b in batches:
        names.extend(n for n in b.phase_names if n not in names)
    number_of = {n: i for i, n in enumerate(names)}
    stats = {k: 0 for k in prepare_examples([], tokenizer, max_seq_len).stats}
    templates: dict[str, ChatTemplate] = {}
    index = MixtureIndex(0, [], [], [], names, stats, templates, max_seq_len)
    for b in batches:
        index.records += b.records
        index.example_records.extend(b.example_records)
        index.lengths.extend(b.example_lengths)
        index.phases.extend(number_of[p] for p in b.example_phases)
        for k, v in b.stats.items():
            stats[k] = stats.get(k, 0) + v
        for kind, t in b.templates.items():
            templates.setdefault(kind, t)
        if b.tokens is not None:
            index._tokens.update(b.tokens)
    return index
