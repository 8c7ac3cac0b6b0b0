"""Text that was decoded wrongly upstream: replacement characters and control characters."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule

# C0 controls other than tab/newline/carriage return, DEL, and C1 controls (a sign of mis-decoded cp1252).
_CONTROL_PATTERN = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CONTROL_RE = re.compile(_CONTROL_PATTERN)


class UndecodableRule(Rule):
    """U+FFFD runs and control characters mean the bytes were decoded with the wrong codec somewhere before
    us; the text is not what its author wrote, so it is held for review rather than trained on."""

    id = "encoding.undecodable"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        text = docs.column("text")
        lengths = pc.fill_null(pc.utf8_length(text), 0).to_pylist()
        replacements = pc.fill_null(pc.count_substring(text, "\ufffd"), 0).to_pylist()
        has_control = pc.fill_null(pc.match_substring_regex(text, _CONTROL_PATTERN), False).to_pylist()
        limit = ctx.gating.max_replacement_ratio
        out: list[DocOutcomes] = []
        for i, (n, bad, control) in enumerate(zip(lengths, replacements, has_control, strict=True)):
            outcomes = []
            if n and bad / n > limit:
                outcomes.append(
                    Outcome(
                        "quarantine",
                        f"{bad} of {n} characters are U+FFFD (ratio {bad / n:.4f} > {limit})",
                        score=bad / n,
                    )
                )
            if control:
                s = text[i].as_py()
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
            out.append(outcomes)
        return out
