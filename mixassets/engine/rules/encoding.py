"""Text that was decoded wrongly upstream: replacement characters and control characters."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule

# C0 controls other than tab/newline/carriage return, DEL, and C1 controls (a sign of mis-decoded cp1252).
_CONTROL_PATTERN = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CONTROL_RE = re.compile(_CONTROL_PATTERN)
_SUSPECT_PATTERN = _CONTROL_PATTERN[:-1] + "\ufffd]"  # a control character or U+FFFD


class UndecodableRule(Rule):
    """U+FFFD runs and control characters mean the bytes were decoded with the wrong codec somewhere before
    us; the text is not what its author wrote, so it is held for review rather than trained on."""

    id = "encoding.undecodable"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        text = docs.column("text")
        limit = ctx.gating.max_replacement_ratio
        out: list[DocOutcomes] = [[] for _ in range(docs.num_rows)]
        # One RE2 pass finds the texts holding a replacement or a control character; only those are counted,
        # for a text with neither has a ratio of 0, which no limit (>= 0) is below.
        suspect = pc.fill_null(pc.match_substring_regex(text, _SUSPECT_PATTERN), False)
        rows = list(range(docs.num_rows)) if limit < 0 else pc.indices_nonzero(suspect).to_pylist()
        if not rows:
            return out
        some = text.take(pa.array(rows, type=pa.int64()))
        lengths = pc.fill_null(pc.utf8_length(some), 0).to_pylist()
        replacements = pc.fill_null(pc.count_substring(some, "\ufffd"), 0).to_pylist()
        has_control = pc.fill_null(pc.match_substring_regex(some, _CONTROL_PATTERN), False).to_pylist()
        for j, (i, n, bad, control) in enumerate(zip(rows, lengths, replacements, has_control, strict=True)):
            outcomes = out[i]
            if n and bad / n > limit:
                outcomes.append(
                    Outcome(
                        "quarantine",
                        f"{bad} of {n} characters are U+FFFD (ratio {bad / n:.4f} > {limit})",
                        score=bad / n,
                    )
                )
            if control:
                s = some[j].as_py()
                hits = _CONTROL_RE.findall(s)
                first = _CONTROL_RE.search(s)
                assert first is not None
                outcomes.append(
                    Outcome(
                        "quarantine",
                        f"{len(hits)} control characters (first U+{ord(first.group()):04X} at {first.start()})",
                        span=(first.start(), first.end()),
                    )
                )
        return out
