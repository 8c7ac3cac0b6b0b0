"""The gate over a source read in batches, in memory bounded by the batch size rather than the source size.

Two rules need more than the document in front of them. Exact duplicates only look back (the first copy is
kept), so one seen-map of 16-byte hashes in the shared context carries them from batch to batch. Boilerplate
looks at the whole source (a line is boilerplate when enough of *all* documents share it), so the source is
read twice: pass 1 streams it once per such rule to build that rule's compact state, pass 2 gates each batch
with that state and hands the batch's tables to a sink. ``batches`` is therefore a factory, not an iterator;
:func:`parquet_batches` is the one to use for a Parquet file, because the default reader keeps every row group
it has read in memory until it is closed (see there).

The result is the same as ``gate()`` on the concatenated batches: the same accepted rows in the same order,
the same quarantine rows in the same order, the same decision rows and the same counts (except the
``time_s.*`` timings). Only the order of the decision log differs: ``gate()`` logs rule by rule over the
whole table, the stream does that within each batch.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from mixassets.engine.freed_memory import release_freed_memory as _release_freed_memory
from mixassets.engine.gating import conform_documents, gate_batch, standing_after
from mixassets.engine.rules import GateContext, Rule, rules_for
from mixtrain.config.data import SourceSpec
from mixtrain.durable import finish_temp, make_dirs, temp_name
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, PARQUET_OPTIONS, QUARANTINE_SCHEMA
from mixtrain.tables import PendingTable, StoredTable, TableWriter

Batches = Callable[[], Iterable[pa.Table | pa.RecordBatch]]
# Rows gated between two hand-backs of freed memory to the OS (see ``_release_freed_memory``): a few
# milliseconds each, against seconds of rules per thousand rows.
RELEASE_EVERY_ROWS = 4_096
# Count families with one key per value seen, which ``gate()`` lists sorted by name, and their section.
_FAMILIES = {"lang.": 1, "domain.": 2, "rule.": 4}


class Openable(Protocol):
    """A local or remote path (``pathlib.Path``, ``UPath``) that opens for binary reading."""

    def open(self, mode: str) -> IO[bytes]: ...


def table_batches(table: StoredTable, batch_size: int) -> Batches:
    """A batch factory over a committed table, part by part, bounded like :func:`parquet_batches`."""
    return lambda: table.batches(batch_size=batch_size)


def parquet_batches(path: str | Openable, batch_size: int) -> Batches:
    """A batch factory over a Parquet file whose reading stays bounded by one row group.

    Two defaults of ``ParquetFile.iter_batches`` make a long read grow. Pre-buffering puts the column chunks
    of the row groups it reads into a read cache that nothing evicts before the reader is destroyed
    (apache/arrow#39808), so a pass over the file ends up holding its compressed bytes, about 1 KB per ~2 KB
    document here. Decoding on Arrow's thread pool allocates in those threads' own malloc arenas, which keep
    growing over a pass (another ~0.3 KB per document here) although nothing in them stays live. Read one row
    group at a time on the calling thread instead: the gate spends its time in the rules, and reading a
    100k-document file takes the same half second either way.
    """

    def batches() -> Iterator[pa.RecordBatch]:
        with open(path, "rb") if isinstance(path, str) else path.open("rb") as f:
            yield from pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=batch_size, use_threads=False)

    return batches


class GateSink(Protocol):
    """Receives each batch's tables in source order; whoever created it decides when the output is final."""

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None: ...


def gate_stream(
    batches: Batches,
    spec: SourceSpec,
    *,
    forbidden_tags: Collection[str] = (),
    rules: Sequence[Rule] | None = None,
    sink: GateSink,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int | float]:
    """Gate one source given as a factory of document batches (each call must yield the same documents in
    the same order), write every batch's accepted / quarantine / decision tables to ``sink`` and return the
    counts of the whole stream, with the keys of ``gate()``'s counts and the rates over all documents.
    ``progress`` is told the rows of each batch gated (not of the rules' preparing passes)."""
    rules = rules_for(spec) if rules is None else list(rules)
    tags = frozenset(forbidden_tags)
    prepared: dict[str, Any] = {}
    for position, rule in enumerate(rules):
        if rule.needs_prepare:
            # A fresh context per pass: rules before this one (a duplicate check, say) must start from nothing,
            # exactly as they do in pass 2; only the states prepared so far are shared.
            scratch = GateContext(spec=spec, forbidden_tags=tags, prepared=prepared)
            shown = _shown_to(rules[:position], _conformed(batches), scratch)
            prepared[rule.id] = rule.prepare(shown, scratch)

    ctx = GateContext(spec=spec, forbidden_tags=tags, prepared=prepared)
    # The counts of an empty source have every key a batch may lack (per-rule timings, PII types at zero).
    totals = dict(gate_batch(DOCUMENT_SCHEMA.empty_table(), rules, GateContext(spec=spec)).counts)
    layout = list(totals)
    for docs in _conformed(batches):
        result = gate_batch(docs, rules, ctx)
        # Per-document observations are only needed for this batch's counts; keeping them would grow with the source.
        ctx.observations.clear()
        sink.write(result.accepted, result.quarantine, result.decisions)
        if progress is not None:
            progress(docs.num_rows)
        for key, value in result.counts.items():
            if not key.endswith("_rate"):
                totals[key] = totals.get(key, 0) + value
    return _finish(totals, layout)


def _conformed(batches: Batches) -> Iterator[pa.Table]:
    since_release = 0
    for number, batch in enumerate(batches()):
        try:
            docs = conform_documents(batch)
        except (ValueError, pa.ArrowInvalid) as e:
            raise ValueError(f"document batch {number}: {e}") from e
        del batch
        yield docs
        since_release += docs.num_rows
        del docs
        if since_release >= RELEASE_EVERY_ROWS:
            _release_freed_memory()
            since_release = 0


def _shown_to(before: Sequence[Rule], docs: Iterable[pa.Table], ctx: GateContext) -> Iterator[pa.Table]:
    """Each batch as the rule after ``before`` will be shown it in pass 2."""
    for batch in docs:
        yield standing_after(batch, before, ctx)
        ctx.observations.clear()


def _finish(totals: dict[str, int | float], layout: list[str]) -> dict[str, int | float]:
    """Rates over the whole stream, and the keys in ``gate()``'s order: ``layout`` is the key order of an
    empty source's counts, and the per-value families that an empty source lacks go where ``gate()`` puts them
    (languages and domains before ``stripped_lines``, fired rules before the timings)."""
    n = totals["ingested"]
    for key in [k for k in totals if k.endswith("_rate")]:
        totals[key] = round(totals[key.removesuffix("_rate")] / n, 6) if n else 0.0
    for key in [k for k in totals if k.startswith("time_s.")]:
        totals[key] = round(totals[key], 6)
    position = {k: i for i, k in enumerate(layout)}
    split = position.get("stripped_lines", len(layout))

    def place(key: str) -> tuple[int, int, str]:
        family = next((section for prefix, section in _FAMILIES.items() if key.startswith(prefix)), None)
        if family is not None:
            return family, 0, key
        i = position.get(key, len(layout))
        return (5 if key.startswith("time_s.") else 0 if i < split else 3), i, key

    return dict(sorted(totals.items(), key=lambda kv: place(kv[0])))


class _FinishingSink(abc.ABC):
    """A sink used as a context manager: ``close()`` when the block ends normally, ``abort()`` on an error."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def abort(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class TableGateSink(_FinishingSink):
    """Streams the three tables into :class:`~mixtrain.tables.TableWriter` parts under their table directories;
    :meth:`close` leaves them pending (the IO manager commits each by writing its manifest), so a failed run
    leaves the committed versions as they were. As a context manager, an exception removes the parts written."""

    def __init__(self, accepted: UPath, quarantine: UPath, decisions: UPath) -> None:
        schemas = (DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, DECISION_SCHEMA)
        self._writers = [
            TableWriter(loc, schema) for loc, schema in zip((accepted, quarantine, decisions), schemas, strict=True)
        ]
        self.pending: tuple[PendingTable, ...] = ()

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
        for writer, table in zip(self._writers, (accepted, quarantine, decisions), strict=True):
            if table.num_rows:
                writer.write(table)

    def close(self) -> None:
        try:
            self.pending = tuple(w.finish() for w in self._writers)
        except BaseException:
            self.abort()  # the writers finished before the failure leave no parts behind either
            raise

    def abort(self) -> None:
        for w in self._writers:
            w.abort()


class ParquetGateSink(_FinishingSink):
    """Writes the three tables batch by batch with ``ParquetWriter`` to hidden temporary files next to their
    targets, and renames each into place on ``close()``: a reader never sees a half-written file, and a run
    that fails leaves the previous outputs as they were. Use it as a context manager, which closes on success
    and discards the temporary files on an exception. Each rename is atomic on its own, not the three together.
    """

    def __init__(self, accepted_path: str | Path, quarantine_path: str | Path, decisions_path: str | Path) -> None:
        targets = (
            (Path(accepted_path), DOCUMENT_SCHEMA),
            (Path(quarantine_path), QUARANTINE_SCHEMA),
            (Path(decisions_path), DECISION_SCHEMA),
        )
        if len({p.resolve() for p, _ in targets}) != len(targets):
            raise ValueError(f"accepted, quarantine and decisions paths must differ: {[str(p) for p, _ in targets]}")
        self._parts: list[tuple[Path, Path, pq.ParquetWriter]] = []
        self._closed = False
        try:
            for path, schema in targets:
                make_dirs(path.parent)
                tmp = path.with_name(temp_name(path.name))
                try:
                    writer = pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                self._parts.append((path, Path(tmp), writer))
        except BaseException:
            self.abort()
            raise

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
        if self._closed:
            raise RuntimeError("ParquetGateSink.write after close or abort")
        for (_, _, writer), table in zip(self._parts, (accepted, quarantine, decisions), strict=True):
            if table.num_rows:
                writer.write_table(table.cast(writer.schema))

    def close(self) -> None:
        """Finish the files, flush them to disk and move them into place."""
        if self._closed:
            return
        try:
            for _, _tmp, writer in self._parts:
                writer.close()
            for path, tmp, _ in self._parts:
                finish_temp(tmp, path)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Drop what was written; the target paths are left untouched."""
        self._closed = True
        for _, tmp, writer in self._parts:
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()
            tmp.unlink(missing_ok=True)
