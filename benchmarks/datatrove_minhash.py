"""datatrove's MinHash pipeline, driven for :mod:`benchmarks.bench_dedupe_datatrove`: the banding it runs with, its
four dedupe stages over in-memory Arrow tables (one task each, run one after another), and the index a refresh
dedupes against. datatrove is imported inside the functions, so importing this module needs only numpy and
pyarrow."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks._harness import timed
from benchmarks.labelled_neardup import NGRAM

DATATROVE_HASHES = 112  # datatrove's default 14 buckets x 8 hashes
INDEX_KEEPER = "<datatrove index>"  # a refresh drop matched to the index, which stores no document ids


@dataclass(frozen=True)
class Banding:
    buckets: int
    hashes_per_bucket: int
    label: str

    def __str__(self) -> str:
        return f"{self.buckets}x{self.hashes_per_bucket} ({self.label})"


DEFAULT_BANDING = Banding(14, 8, "datatrove default")


def balanced_banding(threshold: float, num_hashes: int = DATATROVE_HASHES) -> Banding:
    """The banding whose candidate probability 1-(1-s^r)^b best separates below/above ``threshold``:
    the smallest false-positive area below it plus false-negative area above it, equal weights."""
    s = np.linspace(0.0, 1.0, 2001)
    below, above = s < threshold, s >= threshold
    best: tuple[float, int, int] | None = None
    for rows in range(1, num_hashes + 1):
        bands = num_hashes // rows
        p = 1.0 - (1.0 - s**rows) ** bands
        cost = float(np.trapezoid(p[below], s[below]) + np.trapezoid(1.0 - p[above], s[above]))
        if best is None or cost < best[0]:
            best = (cost, bands, rows)
    assert best is not None
    return Banding(best[1], best[2], "balanced")


def _reader(parts: Sequence[pa.Table]) -> Callable[..., Iterator[Any]]:
    """A datatrove pipeline step that yields task ``rank``'s table as Documents, batch by batch. A plain
    function, because the executor deep-copies its pipeline and would otherwise copy the whole corpus."""
    from datatrove.data import Document

    def read(_data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for batch in parts[rank].select(["doc_id", "text"]).to_batches(max_chunksize=4096):
            for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                yield Document(text=text, id=doc_id)

    return read


def _counter(seen: list[str]) -> Callable[..., Iterator[Any]]:
    def collect(data: Iterator[Any], rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        for doc in data:
            seen.append(doc.id)
            yield doc

    return collect


def _tokenizer(name: str) -> Any:
    """datatrove's word tokenizer: ``"default"`` is its English default (spaCy); ``"whitespace"`` splits on
    spaces, which is enough after datatrove's own ``simplify_text`` has turned punctuation into spaces, and
    shows what datatrove costs without spaCy."""
    from datatrove.utils.typeshelper import Languages
    from datatrove.utils.word_tokenizers import WordTokenizer

    if name == "default":
        return Languages.english

    class WhitespaceTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    return WhitespaceTokenizer("whitespace")


def _config(banding: Banding) -> Any:
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    return MinhashConfig(n_grams=NGRAM, num_buckets=banding.buckets, hashes_per_bucket=banding.hashes_per_bucket)


def _run_stage(pipeline: list[Any], tasks: int, logs: Path) -> tuple[float, float]:
    from datatrove.executor import LocalPipelineExecutor

    executor = LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(logs))
    _, t = timed(executor.run)
    return t.seconds, t.cpu_seconds


def run_datatrove(
    parts: Sequence[pa.Table],
    workdir: Path,
    banding: Banding,
    *,
    index_dir: Path | None = None,
    tokenizer: str = "default",
) -> dict[str, Any]:
    """The four datatrove MinHash stages over ``parts`` (one input file / task each, run one after another).
    With ``index_dir`` the documents are also deduped against that datatrove index (a refresh).

    Returns per-stage wall and CPU seconds and ``keeper_of``: dropped doc -> the kept doc of its cluster,
    or ``INDEX_KEEPER`` when the cluster's survivor is in the index.
    """
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    config = _config(banding)
    sigs, buckets, clusters, logs = (workdir / n for n in ("sigs", "buckets", "clusters", "logs"))
    kept: list[str] = []
    stages = {
        "signature": (
            [
                _reader(parts),
                MinhashDedupSignature(output_folder=str(sigs), config=config, language=_tokenizer(tokenizer)),
            ],
            len(parts),
        ),
        "buckets": (
            [
                MinhashDedupBuckets(
                    input_folder=str(sigs),
                    output_folder=str(buckets),
                    config=config,
                    index_folder=str(index_dir) if index_dir else None,
                    only_dedup_in_index=False,
                )
            ],
            banding.buckets,  # one task per bucket
        ),
        "cluster": (
            [
                MinhashDedupCluster(
                    input_folder=str(buckets), output_folder=str(clusters), config=config, save_cluster_id=True
                )
            ],
            1,
        ),
        "filter": ([_reader(parts), MinhashDedupFilter(input_folder=str(clusters)), _counter(kept)], len(parts)),
    }
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, (pipeline, tasks) in stages.items():
        seconds[name], cpu[name] = _run_stage(pipeline, tasks, logs / name)

    kept_set = set(kept)
    keeper_of_cluster: dict[int, str] = {}
    cluster_of: dict[str, int] = {}
    for rank, part in enumerate(parts):
        doc_ids = part.column("doc_id").to_pylist()
        for i, c in _read_pairs(clusters / f"{rank:06d}.clusters"):  # (doc index in file, cluster id)
            cluster_of[doc_ids[int(i)]] = int(c)
            if doc_ids[int(i)] in kept_set:
                keeper_of_cluster[int(c)] = doc_ids[int(i)]
    dropped = [d for part in parts for d in part.column("doc_id").to_pylist() if d not in kept_set]
    if len(kept) + len(dropped) != sum(p.num_rows for p in parts):
        raise RuntimeError("datatrove: kept + dropped does not add up to the input")
    keeper_of = {d: keeper_of_cluster.get(cluster_of.get(d, -1), INDEX_KEEPER) for d in dropped}
    return {"stage_seconds": seconds, "stage_cpu_seconds": cpu, "keeper_of": keeper_of}


def build_datatrove_index(sig_dir: Path, rank: int, workdir: Path, banding: Banding) -> tuple[Path, float]:
    """A datatrove index of the signatures one earlier task wrote (what a previous build leaves behind when
    it is asked to), so a refresh can dedupe against it. Returns the index folder and the seconds taken."""
    from datatrove.pipeline.dedup.minhash import MinhashBuildIndex

    only = workdir / "base_sigs"
    for bucket in range(banding.buckets):
        src = sig_dir / f"bucket_{bucket:03d}" / f"{rank:05d}.minhash.sig"
        (only / src.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, only / src.parent.name / src.name)
    index = workdir / "index"
    step = MinhashBuildIndex(
        input_folder=str(only), output_folder=str(index), index_name="base", config=_config(banding)
    )
    seconds, _ = _run_stage([step], banding.buckets, workdir / "logs" / "index")
    return index, seconds


def _read_pairs(path: Path) -> np.ndarray:
    if not path.exists():
        return np.empty((0, 2), dtype=np.uint32)
    return np.fromfile(path, dtype="<u4").reshape(-1, 2)
