"""The gating history is every materialization of every gated partition, one row per rule that ran or fired."""

from __future__ import annotations

from mixassets.engine.gating_history import GateMaterialization, build_gating_history, latest_hit_rates


def _m(sid: str, run: str, t: float, **metrics: float) -> GateMaterialization:
    return GateMaterialization(sid, run, t, f"v-{run}", {k.replace("__", "."): v for k, v in metrics.items()})


def test_one_row_per_source_rule_and_materialization() -> None:
    history = build_gating_history(
        [  # given out of order: the table is ordered by time
            _m("web", "r2", 200.0, ingested=10, rule__length=3, time_s__length=0.5, time_s__pii=0.1),
            _m("web", "r1", 100.0, ingested=8, rule__length=1, rule__pii__email=2, time_s__length=0.4, time_s__pii=0.1),
            _m("code", "r1", 100.0, ingested=0, time_s__length=0.0),
        ]
    )
    rows = [(r["source_id"], r["run_id"], r["rule_id"], r["hits"], r["hit_rate"]) for r in history.to_pylist()]
    assert rows == [
        ("code", "r1", "length", 0, None),  # nothing ingested: no rate rather than 0/0
        ("web", "r1", "length", 1, 1 / 8),
        ("web", "r1", "pii", 0, 0.0),  # ran and fired on nothing: a 0, not a gap
        ("web", "r1", "pii.email", 2, 2 / 8),  # a finer id that fired
        ("web", "r2", "length", 3, 3 / 10),
        ("web", "r2", "pii", 0, 0.0),
    ]
    assert history.column("data_version").to_pylist()[1] == "v-r1"
    assert history.column("seconds").to_pylist()[3] is None  # a finer id has no timing of its own


def test_latest_hit_rates_pool_every_source_latest_gating() -> None:
    history = build_gating_history(
        [
            _m("web", "r1", 100.0, ingested=8, rule__length=8, time_s__length=0.4),
            _m("web", "r2", 200.0, ingested=10, rule__length=3, time_s__length=0.5),
            _m("forum", "r1", 100.0, ingested=30, rule__length=1, time_s__length=0.5),
        ]
    )
    assert latest_hit_rates(history) == {"length": round(4 / 40, 6)}  # web's r1 is superseded by r2


def test_empty_history_is_an_empty_table() -> None:
    history = build_gating_history([])
    assert history.num_rows == 0 and "hit_rate" in history.column_names
    assert latest_hit_rates(history) == {}
