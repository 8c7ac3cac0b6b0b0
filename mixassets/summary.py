"""The data side's lines of the run summary: gating per source, dedupe, the screen, the mixture."""

from __future__ import annotations

from dagster import DagsterInstance

from mixtrain.partitions import SOURCES_PARTITION
from mixtrain.summary import latest_metadata


def summary_lines(instance: DagsterInstance) -> list[str]:
    out: list[str] = []
    sources = sorted(instance.get_dynamic_partitions(SOURCES_PARTITION))
    out.append("== gating (per source) ==")
    out.append(f"{'source':<20}{'ingested':>10}{'accepted':>10}{'quarant.':>10}{'rejected':>10}")
    for sid in sources:
        m = latest_metadata(instance, "gated_documents", sid)
        out.append(
            f"{sid:<20}{m.get('ingested', '-')!s:>10}{m.get('accepted', '-')!s:>10}"
            f"{m.get('quarantined', '-')!s:>10}{m.get('rejected', '-')!s:>10}"
        )
    d = latest_metadata(instance, "deduplicated_corpus")
    out.append(
        f"== dedupe ==  in {d.get('documents_in', '-')}  kept {d.get('documents_kept', '-')}  "
        f"exact dups {d.get('exact_duplicates', '-')}  near dups {d.get('near_duplicates', '-')}"
    )
    s = latest_metadata(instance, "screened_corpus")
    f = latest_metadata(instance, "contamination_findings")
    by_method = {k.split("/", 1)[1]: v for k, v in f.items() if k.startswith("findings/")}
    out.append(
        f"== contamination screen ==  in {s.get('documents_in', '-')}  clean {s.get('documents_clean', '-')}  "
        f"contaminated docs {s.get('contaminated', '-')}  findings by method {by_method}"
    )
    r = latest_metadata(instance, "contamination_report")
    for eval_set in sorted({k.split("/", 1)[0] for k in r if k.endswith("/items_leaked")}):
        out.append(
            f"  {eval_set:<20} items leaked {r[f'{eval_set}/items_leaked']} (holdout "
            f"{r.get(f'{eval_set}/holdout_leaked', '-')}, target {r.get(f'{eval_set}/target_leaked', '-')}) "
            f"in {r.get(f'{eval_set}/documents_hit', '-')} documents"
        )
    m = latest_metadata(instance, "mixture")
    out.append(f"== mixture ==  documents {m.get('documents', '-')}  tokens {m.get('tokens', '-')}")
    for k, v in sorted(m.items()):
        if k.startswith("share/"):
            src = k.split("/", 1)[1]
            out.append(
                f"  {src:<20} share {float(v):6.3f}  tokens {m.get(f'tokens/{src}', 0)!s:>8}"
                f"  excluded by policy {m.get(f'excluded_by_policy/{src}', 0)}"
            )
    return out
