"""Tests for albackup.retention: table-driven rules, a golden year of hourly runs, and properties.

Timelines are hand-made lists of UTC times; a backup's id is its time (``2026-11-22T09:30``), so an
expected keep set reads like the timeline. The golden test simulates a year of scheduled runs with
an injected clock and compares the final kept list with ``tests/golden/retention_year.txt``; after
a deliberate change of semantics, rewrite it with ``ALBACKUP_UPDATE_GOLDEN=1`` and read the diff.
"""
from __future__ import annotations

import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albackup.errors import ConfigError
from albackup.retention import (BackupRef, Decision, Policy, apply_policy, due_periods, format_duration,
                                parse_duration)

UTC = timezone.utc
GOLDEN = Path(__file__).resolve().parent / "golden" / "retention_year.txt"


def t(iso: str) -> datetime:
    """"2026-11-22T09:30" (UTC unless an offset is given) → aware datetime."""
    d = datetime.fromisoformat(iso)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def refs(*isos: str, incomplete: Sequence[str] = ()) -> list[BackupRef]:
    return [BackupRef(iso, t(iso), complete=iso not in incomplete) for iso in isos]


def kept(decisions: list[Decision]) -> list[str]:
    return [d.backup.id for d in decisions if d.keep]


def reasons_of(decisions: list[Decision]) -> dict[str, tuple[str, ...]]:
    return {d.backup.id: d.reasons for d in decisions}


# ---------------------------------------------------------------- each rule alone, exact keep sets

RULE_CASES: list[tuple[str, list[BackupRef], Policy, str, list[str]]] = [
    ("hourly keeps the newest backup of each of the 3 newest hours",
     refs("2026-11-22T09:10", "2026-11-22T09:50", "2026-11-22T10:05", "2026-11-22T10:40",
          "2026-11-22T11:00", "2026-11-22T12:30"),
     Policy(hourly=3), "2026-11-22T12:45",
     ["2026-11-22T12:30", "2026-11-22T11:00", "2026-11-22T10:40"]),
    ("daily keeps the last backup of each of the 2 newest days",
     refs("2026-11-20T23:00", "2026-11-21T01:00", "2026-11-21T23:59", "2026-11-22T00:00", "2026-11-22T08:00"),
     Policy(daily=2), "2026-11-22T09:00",
     ["2026-11-22T08:00", "2026-11-21T23:59"]),
    ("daily counts days that have a backup, not calendar days",
     refs("2026-11-01T12:00", "2026-11-05T12:00", "2026-11-20T12:00", "2026-11-21T12:00"),
     Policy(daily=3), "2026-11-30T00:00",
     ["2026-11-21T12:00", "2026-11-20T12:00", "2026-11-05T12:00"]),
    ("weekly: Sunday 2026-11-22 is W47, Monday 2026-11-23 is W48",
     refs("2026-11-16T10:00", "2026-11-22T23:59", "2026-11-23T00:00", "2026-11-25T10:00"),
     Policy(weekly=2), "2026-11-25T11:00",
     ["2026-11-25T10:00", "2026-11-22T23:59"]),
    ("monthly at month ends (January 31, February 28)",
     refs("2026-01-15T00:00", "2026-01-31T23:59", "2026-02-01T00:00", "2026-02-28T23:00", "2026-03-01T00:30"),
     Policy(monthly=2), "2026-03-01T01:00",
     ["2026-03-01T00:30", "2026-02-28T23:00"]),
    ("monthly=12 keeps every month when there are fewer",
     refs("2026-01-31T23:59", "2026-02-01T00:00", "2026-02-28T23:00"),
     Policy(monthly=12), "2026-03-01T00:00",
     ["2026-02-28T23:00", "2026-01-31T23:59"]),
    ("yearly at the year change",
     refs("2024-12-31T23:59", "2025-06-01T00:00", "2025-12-31T23:59:59", "2026-01-01T00:00"),
     Policy(yearly=2), "2026-01-01T01:00",
     ["2026-01-01T00:00", "2025-12-31T23:59:59"]),
    ("keep_last keeps the N newest",
     refs("2026-11-20T00:00", "2026-11-21T00:00", "2026-11-22T00:00", "2026-11-22T01:00"),
     Policy(keep_last=2), "2026-11-22T02:00",
     ["2026-11-22T01:00", "2026-11-22T00:00"]),
    ("keep_last larger than the list keeps all",
     refs("2026-11-21T00:00", "2026-11-22T00:00"),
     Policy(keep_last=5), "2026-11-22T02:00",
     ["2026-11-22T00:00", "2026-11-21T00:00"]),
    ("keep_within keeps what is strictly newer than now - D (the boundary itself goes)",
     refs("2026-11-19T23:59", "2026-11-20T12:00", "2026-11-20T12:01", "2026-11-21T00:00", "2026-11-22T11:00"),
     Policy(keep_within=timedelta(days=2)), "2026-11-22T12:00",
     ["2026-11-22T11:00", "2026-11-21T00:00", "2026-11-20T12:01"]),
    ("keep_within counts backups dated after now (clock skew) as within",
     refs("2026-11-10T00:00", "2026-11-22T13:00"),
     Policy(keep_within=timedelta(hours=1)), "2026-11-22T12:00",
     ["2026-11-22T13:00"]),
    ("the newest is kept even if no rule keeps it",
     refs("2026-01-01T00:00", "2026-02-01T00:00"),
     Policy(keep_within=timedelta(hours=1)), "2026-11-22T12:00",
     ["2026-02-01T00:00"]),
    ("buckets are UTC: 23:30-05:00 on the 22nd is the 23rd",
     refs("2026-11-22T20:00+00:00", "2026-11-22T23:30-05:00", "2026-11-23T03:00+00:00"),
     Policy(daily=2), "2026-11-23T05:00",
     ["2026-11-22T23:30-05:00", "2026-11-22T20:00+00:00"]),
    ("ISO week across the year change: 2026-12-31 and 2027-01-01 are both 2026-W53",
     refs("2026-12-27T12:00", "2026-12-31T12:00", "2027-01-01T12:00"),
     Policy(weekly=2), "2027-01-01T13:00",
     ["2027-01-01T12:00", "2026-12-27T12:00"]),
    ("the same timeline by year keeps both sides of the year change",
     refs("2026-12-27T12:00", "2026-12-31T12:00", "2027-01-01T12:00"),
     Policy(yearly=2), "2027-01-01T13:00",
     ["2027-01-01T12:00", "2026-12-31T12:00"]),
    ("ISO week 2025-W01 starts on Monday 2024-12-30",
     refs("2024-12-29T12:00", "2024-12-30T12:00", "2025-01-02T12:00"),
     Policy(weekly=3), "2025-01-03T00:00",
     ["2025-01-02T12:00", "2024-12-29T12:00"]),
]


@pytest.mark.parametrize("title,backups,policy,now,expected", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_rule_keeps_exactly(title: str, backups: list[BackupRef], policy: Policy, now: str,
                            expected: list[str]) -> None:
    decisions = apply_policy(backups, policy, t(now))
    assert kept(decisions) == expected
    assert [d.backup.id for d in decisions] == [b.id for b in sorted(backups, key=lambda b: b.time, reverse=True)]
    for d in decisions:
        assert bool(d.reasons) == d.keep


REASON_CASES: list[tuple[str, list[BackupRef], Policy, str, dict[str, tuple[str, ...]]]] = [
    ("one backup counts for daily, weekly and monthly (Sunday 2026-05-31 ends May and W22)",
     refs(*(f"2026-05-{d:02d}T12:00" for d in range(25, 32)), "2026-06-01T12:00", "2026-06-02T12:00"),
     Policy(daily=5, weekly=2, monthly=2), "2026-06-02T13:00",
     {"2026-06-02T12:00": ("newest", "daily 2026-06-02", "weekly 2026-W23", "monthly 2026-06"),
      "2026-06-01T12:00": ("daily 2026-06-01",),
      "2026-05-31T12:00": ("daily 2026-05-31", "weekly 2026-W22", "monthly 2026-05"),
      "2026-05-30T12:00": ("daily 2026-05-30",),
      "2026-05-29T12:00": ("daily 2026-05-29",),
      "2026-05-28T12:00": (), "2026-05-27T12:00": (), "2026-05-26T12:00": (), "2026-05-25T12:00": ()}),
    ("every rule at once, reasons in rule order",
     refs("2026-11-22T08:00", "2026-11-22T09:30"),
     Policy(keep_last=3, hourly=2, daily=1, weekly=1, monthly=1, yearly=1, keep_within=timedelta(days=7)),
     "2026-11-22T10:00",
     {"2026-11-22T09:30": ("newest", "last 3", "within 7d", "hourly 2026-11-22T09", "daily 2026-11-22",
                           "weekly 2026-W47", "monthly 2026-11", "yearly 2026"),
      "2026-11-22T08:00": ("last 3", "within 7d", "hourly 2026-11-22T08")}),
    ("keep_within shown as days and hours",
     refs("2026-11-22T08:00", "2026-11-22T09:30"),
     Policy(keep_within=timedelta(hours=36)), "2026-11-22T10:00",
     {"2026-11-22T09:30": ("newest", "within 1d12h"), "2026-11-22T08:00": ("within 1d12h",)}),
    ("incomplete: old ones removed, recent ones kept as in progress, never counted",
     refs("2026-11-20T09:00", "2026-11-21T08:00", "2026-11-21T10:00", "2026-11-22T07:00", "2026-11-22T09:00",
          incomplete=["2026-11-20T09:00", "2026-11-21T10:00", "2026-11-22T09:00"]),
     Policy(keep_last=1, daily=2), "2026-11-22T09:30",
     {"2026-11-22T09:00": ("in progress?",),
      "2026-11-22T07:00": ("newest", "last 1", "daily 2026-11-22"),
      "2026-11-21T10:00": ("in progress?",),  # 23.5 hours old: a run may still be writing it
      "2026-11-21T08:00": ("daily 2026-11-21",),
      "2026-11-20T09:00": ("incomplete",)}),
    ("an incomplete backup exactly one day old is removed",
     refs("2026-11-21T09:30", "2026-11-22T09:00", incomplete=["2026-11-21T09:30"]),
     Policy(daily=7), "2026-11-22T09:30",
     {"2026-11-22T09:00": ("newest", "daily 2026-11-22"), "2026-11-21T09:30": ("incomplete",)}),
    ("only incomplete backups: no newest to keep",
     refs("2026-11-01T00:00", "2026-11-22T00:00", incomplete=["2026-11-01T00:00", "2026-11-22T00:00"]),
     Policy(daily=7), "2026-11-22T01:00",
     {"2026-11-22T00:00": ("in progress?",), "2026-11-01T00:00": ("incomplete",)}),
    ("equal times are ordered by id, newest first",
     [BackupRef("a", t("2026-11-22T09:00")), BackupRef("b", t("2026-11-22T09:00"))],
     Policy(hourly=1), "2026-11-22T10:00",
     {"b": ("newest", "hourly 2026-11-22T09"), "a": ()}),
]


@pytest.mark.parametrize("title,backups,policy,now,expected", REASON_CASES, ids=[c[0] for c in REASON_CASES])
def test_reasons(title: str, backups: list[BackupRef], policy: Policy, now: str,
                 expected: dict[str, tuple[str, ...]]) -> None:
    decisions = apply_policy(backups, policy, t(now))
    assert [d.backup.id for d in decisions] == list(expected)  # newest first
    assert reasons_of(decisions) == expected
    for d in decisions:
        assert d.keep == (bool(d.reasons) and d.reasons != ("incomplete",))


def test_empty_input() -> None:
    assert apply_policy([], Policy(daily=1), t("2026-11-22T00:00")) == []


def test_unsorted_input_gives_the_same_newest_first_decisions() -> None:
    backups = refs(*(f"2026-{m:02d}-{d:02d}T{h:02d}:17" for m in (1, 2, 3) for d in (1, 15, 28) for h in (3, 21)),
                   incomplete=["2026-03-28T21:17", "2026-02-15T03:17"])
    policy = Policy(keep_last=2, daily=4, weekly=3, monthly=2)
    expected = apply_policy(backups, policy, t("2026-03-29T00:00"))
    assert [d.backup.time for d in expected] == sorted((b.time for b in backups), reverse=True)
    for seed in range(5):
        shuffled = backups[:]
        random.Random(seed).shuffle(shuffled)
        assert apply_policy(shuffled, policy, t("2026-03-29T00:00")) == expected


# ---------------------------------------------------------------- refusals

def test_empty_policy_refused_by_apply_and_due() -> None:
    for call in (apply_policy, due_periods):
        with pytest.raises(ConfigError, match="empty retention policy would delete everything; refusing"):
            call(refs("2026-11-22T00:00"), Policy(), t("2026-11-22T01:00"))


@pytest.mark.parametrize("mapping", [{}, {"daily": 0}, {"keep_last": 0, "hourly": 0, "yearly": 0}])
def test_empty_policy_refused_from_mapping(mapping: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as exc:
        Policy.from_mapping(mapping, keypath="databases.shop.retention")
    assert exc.value.message.startswith("databases.shop.retention: an empty retention policy would delete "
                                        "everything; refusing")
    assert exc.value.exit_code == 3


BAD_MAPPINGS: list[tuple[Any, str]] = [
    ({"dayly": 7}, r"^retention\.dayly: unknown key; did you mean `daily`\?$"),
    ({"keep": 3}, r"^retention\.keep: unknown key; did you mean `keep_last`\?$"),
    ({"zzz": 1}, r"^retention\.zzz: unknown key; known keys: `keep_last`, `hourly`, .*`keep_within`$"),
    ({"daily": -1}, r"^retention\.daily: expected a non-negative whole number \(0 = rule off\), got number -1$"),
    ({"daily": "7"}, r"^retention\.daily: .*got text '7'$"),
    ({"weekly": 1.5}, r"^retention\.weekly: .*got number 1\.5$"),
    ({"monthly": True}, r"^retention\.monthly: .*got boolean true$"),
    ({"yearly": None}, r"^retention\.yearly: .*got null$"),
    ({"keep_within": "7x"}, r"^retention\.keep_within: '7x' is not a duration; write e\.g\. \"36h\""),
    ({"keep_within": "90min"}, r"^retention\.keep_within: '90min' is not a duration"),
    ({"keep_within": "7"}, r"^retention\.keep_within: '7' is not a duration"),
    ({"keep_within": ""}, r"^retention\.keep_within: '' is not a duration"),
    ({"keep_within": "-7d"}, r"^retention\.keep_within: '-7d' is not a duration"),
    ({"keep_within": "7D"}, r"^retention\.keep_within: '7D' is not a duration"),
    ({"keep_within": "7d7d"}, r"^retention\.keep_within: '7d7d' gives a unit twice"),
    ({"keep_within": "0d0h"}, r"^retention\.keep_within: '0d0h' is zero; leave keep_within out instead$"),
    ({"keep_within": 7}, r"^retention\.keep_within: expected a duration, got number 7; write e\.g\."),
    ({"keep_within": timedelta(0)}, r"^retention\.keep_within: must be a positive duration"),
    (["daily", 7], r"^retention: expected a mapping of retention rules, got a list$"),
    (None, r"^retention: expected a mapping of retention rules, got null$"),
]


@pytest.mark.parametrize("mapping,message", BAD_MAPPINGS, ids=[repr(m) for m, _ in BAD_MAPPINGS])
def test_bad_mapping_refused_naming_the_key_path(mapping: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Policy.from_mapping(mapping)


def test_key_path_prefix_is_used() -> None:
    with pytest.raises(ConfigError, match=r"^databases\[0\]\.retention\.daily: "):
        Policy.from_mapping({"daily": -3}, keypath="databases[0].retention")


GOOD_MAPPINGS: list[tuple[dict[str, Any], Policy]] = [
    ({"daily": 7}, Policy(daily=7)),
    ({"keep_last": 3, "hourly": 24, "daily": 7, "weekly": 5, "monthly": 12, "yearly": 2},
     Policy(keep_last=3, hourly=24, daily=7, weekly=5, monthly=12, yearly=2)),
    ({"keep_within": "36h"}, Policy(keep_within=timedelta(hours=36))),
    ({"keep_within": "7d", "daily": 0}, Policy(keep_within=timedelta(days=7))),
    ({"keep_within": "2w"}, Policy(keep_within=timedelta(days=14))),
    ({"keep_within": "1y"}, Policy(keep_within=timedelta(days=365))),
    ({"keep_within": "90m"}, Policy(keep_within=timedelta(days=2700))),  # m is months, as in restic
    ({"keep_within": "2y5m7d3h"}, Policy(keep_within=timedelta(days=730 + 150 + 7, hours=3))),
    ({"keep_within": "3h1d"}, Policy(keep_within=timedelta(days=1, hours=3))),
    ({"keep_within": " 1d "}, Policy(keep_within=timedelta(days=1))),
    ({"keep_within": timedelta(minutes=90)}, Policy(keep_within=timedelta(minutes=90))),
]


@pytest.mark.parametrize("mapping,policy", GOOD_MAPPINGS, ids=[repr(m) for m, _ in GOOD_MAPPINGS])
def test_good_mapping(mapping: dict[str, Any], policy: Policy) -> None:
    assert Policy.from_mapping(mapping) == policy
    assert not policy.is_empty()


@pytest.mark.parametrize("d,text", [(timedelta(days=7), "7d"), (timedelta(hours=36), "1d12h"),
                                    (timedelta(hours=5), "5h"), (timedelta(minutes=90), "1:30:00")])
def test_format_duration(d: timedelta, text: str) -> None:
    assert format_duration(d) == text


def test_parse_duration_default_key_path() -> None:
    with pytest.raises(ConfigError, match=r"^retention\.keep_within: "):
        parse_duration("soon")


@pytest.mark.parametrize("kwargs", [{"daily": -1}, {"hourly": True}, {"weekly": 2.0},
                                    {"keep_within": timedelta(0)}, {"keep_within": "7d"}])
def test_policy_constructor_checks_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)


def test_naive_times_and_duplicate_ids_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        BackupRef("x", datetime(2026, 11, 22))
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        apply_policy([], Policy(daily=1), datetime(2026, 11, 22))
    with pytest.raises(ValueError, match="given twice"):
        apply_policy([BackupRef("x", t("2026-11-22T00:00")), BackupRef("x", t("2026-11-21T00:00"))],
                     Policy(daily=1), t("2026-11-22T01:00"))


# ---------------------------------------------------------------- due_periods

DUE_CASES: list[tuple[str, list[BackupRef], Policy, str, list[str]]] = [
    ("nothing yet: every period is due", [], Policy(hourly=24, daily=7, weekly=4, monthly=12, yearly=2),
     "2026-11-22T09:50", ["hourly", "daily", "weekly", "monthly", "yearly"]),
    ("a backup this hour satisfies all", refs("2026-11-22T09:05"),
     Policy(hourly=24, daily=7, weekly=4), "2026-11-22T09:50", []),
    ("next hour: only hourly", refs("2026-11-22T09:05"),
     Policy(hourly=24, daily=7, weekly=4), "2026-11-22T10:01", ["hourly"]),
    ("Sunday's backup on Monday: daily and weekly", refs("2026-11-22T09:05"),
     Policy(daily=7, weekly=4, monthly=3), "2026-11-23T00:10", ["daily", "weekly"]),
    ("new year inside ISO week 2026-W53: monthly and yearly, not weekly", refs("2026-12-31T23:59"),
     Policy(weekly=4, monthly=3, yearly=2), "2027-01-01T00:01", ["monthly", "yearly"]),
    ("now is compared in UTC", refs("2026-12-31T22:00"),
     Policy(daily=7, monthly=3, yearly=2), "2027-01-01T01:00+02:00", []),
    ("a failed (incomplete) run does not count", refs("2026-11-22T09:05", incomplete=["2026-11-22T09:05"]),
     Policy(daily=7), "2026-11-22T09:50", ["daily"]),
    ("keep_last alone: due every call", refs("2026-11-22T09:05"), Policy(keep_last=3), "2026-11-22T09:06", ["last"]),
    ("keep_within alone: due every call", refs("2026-11-22T09:05"),
     Policy(keep_within=timedelta(days=7)), "2026-11-22T09:06", ["within"]),
    ("keep_last with a period: the period decides", refs("2026-11-22T09:05"),
     Policy(keep_last=3, daily=7), "2026-11-22T09:06", []),
]


@pytest.mark.parametrize("title,backups,policy,now,expected", DUE_CASES, ids=[c[0] for c in DUE_CASES])
def test_due_periods(title: str, backups: list[BackupRef], policy: Policy, now: str, expected: list[str]) -> None:
    assert due_periods(backups, policy, t(now)) == expected


# ---------------------------------------------------------------- golden: a year of hourly runs

YEAR_POLICY = Policy(hourly=24, daily=7, weekly=5, monthly=12, yearly=2)


class FakeClock:
    """The injected clock of the scheduled run: starts where told, moves only when told."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def backup_id(when: datetime) -> str:
    return f"shop@db1--{when.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def check_invariants(decisions: list[Decision], policy: Policy) -> None:
    complete = [d for d in decisions if d.backup.complete]
    if complete:
        assert complete[0].keep and "newest" in complete[0].reasons
    limit = policy.keep_last + sum(getattr(policy, p) for p in ("hourly", "daily", "weekly", "monthly", "yearly"))
    assert sum(d.keep for d in complete) <= limit + 1
    assert all(d.reasons for d in decisions if d.keep)


def simulate(policy: Policy, start: datetime, runs: int,
             on_step: Callable[[list[Decision]], None]) -> tuple[list[Decision], int]:
    """Each run: dump if a period is due, then prune what the policy says. Returns the last decisions."""
    clock = FakeClock(start)
    stored: list[BackupRef] = []
    dumps = 0
    decisions: list[Decision] = []
    for _ in range(runs):
        now = clock.now()
        if due_periods(stored, policy, now):
            stored.append(BackupRef(backup_id(now), now))
            dumps += 1
        assert due_periods(stored, policy, now) == []
        decisions = apply_policy(stored, policy, now)
        on_step(decisions)
        stored = [d.backup for d in decisions if d.keep]
        clock.advance(timedelta(hours=1))
    return decisions, dumps


def render(decisions: list[Decision], policy: Policy) -> str:
    kept_ = [d for d in decisions if d.keep]
    lines = [f"# albackup.retention golden file: {len(kept_)} backups kept after a year of hourly runs",
             "# (2026-01-01T00:17Z .. 2026-12-31T23:17Z, pruned after each run) with",
             f"# {policy}",
             *(f"{d.backup.id}  {', '.join(d.reasons)}" for d in kept_)]
    return "\n".join(lines) + "\n"


def test_golden_year_of_hourly_runs() -> None:
    steps = 0

    def on_step(decisions: list[Decision]) -> None:
        nonlocal steps
        steps += 1
        check_invariants(decisions, YEAR_POLICY)

    decisions, dumps = simulate(YEAR_POLICY, datetime(2026, 1, 1, 0, 17, tzinfo=UTC), 24 * 365, on_step)
    assert steps == dumps == 24 * 365
    assert decisions[0].backup.time == datetime(2026, 12, 31, 23, 17, tzinfo=UTC)
    text = render(decisions, YEAR_POLICY)
    if os.environ.get("ALBACKUP_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_golden_file_is_sane() -> None:
    """What the golden file says, checked by rule so a bad regeneration cannot slip through unread."""
    lines = [ln for ln in GOLDEN.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    reasons = [ln.split("  ", 1)[1].split(", ") for ln in lines]
    count = {p: sum(any(r.startswith(p + " ") for r in rs) for rs in reasons)
             for p in ("hourly", "daily", "weekly", "monthly", "yearly")}
    # one year (2026) and twelve months exist; 24 hours, 7 days, 5 weeks are all available
    assert count == {"hourly": 24, "daily": 7, "weekly": 5, "monthly": 12, "yearly": 1}
    # overlaps: the newest is hourly+daily+weekly+monthly+yearly; Sunday 12-27 is daily+weekly
    assert len(lines) == 24 + 6 + 3 + 11
    assert lines[0] == ("shop@db1--20261231T231700Z  newest, hourly 2026-12-31T23, daily 2026-12-31, "
                        "weekly 2026-W53, monthly 2026-12, yearly 2026")
    assert "shop@db1--20261227T231700Z  daily 2026-12-27, weekly 2026-W52" in lines
    assert lines[-1] == "shop@db1--20260131T231700Z  monthly 2026-01"


def test_failed_runs_are_retried_and_cleaned_up() -> None:
    """A short simulation where every 7th dump crashes, leaving an incomplete backup."""
    policy = Policy(keep_last=2, daily=3)
    clock = FakeClock(datetime(2026, 3, 1, 0, 30, tzinfo=UTC))
    stored: list[BackupRef] = []
    dumps: list[BackupRef] = []
    for run in range(24 * 20):
        now = clock.now()
        if due_periods(stored, policy, now):  # daily: once a day, retried the next hour after a crash
            dumps.append(BackupRef(backup_id(now), now, complete=run % 7 != 3))
            stored.append(dumps[-1])
        decisions = apply_policy(stored, policy, now)
        check_invariants(decisions, policy)
        assert all(d.backup.complete or now - d.backup.time < timedelta(days=1) for d in decisions if d.keep)
        stored = [d.backup for d in decisions if d.keep]
        clock.advance(timedelta(hours=1))
    crashed = [b.time for b in dumps if not b.complete]
    assert crashed and all(c + timedelta(hours=1) in [b.time for b in dumps] for c in crashed)
    assert len(dumps) == 20 + len(crashed)
    # the 3 newest days' last backups (the newest 2 are also the last 2); the crashed ones are gone
    assert [b.time.day for b in stored] == [20, 19, 18] and all(b.complete for b in stored)


# ---------------------------------------------------------------- properties

BASE = datetime(2025, 6, 1, tzinfo=UTC)
TWO_YEARS_MINUTES = 2 * 366 * 24 * 60


@st.composite
def timelines(draw: st.DrawFn) -> list[BackupRef]:
    minutes = draw(st.lists(st.integers(0, TWO_YEARS_MINUTES), max_size=40))
    offsets = draw(st.sampled_from([0, 60, -300, 330]))  # some backups stamped in other zones
    zone = timezone(timedelta(minutes=offsets))
    return [BackupRef(f"b{i:03d}", (BASE + timedelta(minutes=m)).astimezone(zone), complete=draw(st.booleans()) or
                      draw(st.booleans()))
            for i, m in enumerate(minutes)]


policies = st.builds(
    Policy, keep_last=st.integers(0, 4), hourly=st.integers(0, 6), daily=st.integers(0, 6),
    weekly=st.integers(0, 4), monthly=st.integers(0, 4), yearly=st.integers(0, 3),
    keep_within=st.none() | st.integers(1, 24 * 400).map(lambda h: timedelta(hours=h)),
).filter(lambda p: not p.is_empty())
nows = st.integers(-60 * 24 * 10, TWO_YEARS_MINUTES + 60 * 24 * 40).map(lambda m: BASE + timedelta(minutes=m))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines(), policies, nows, st.randoms(use_true_random=False))
def test_properties(backups: list[BackupRef], policy: Policy, now: datetime, rnd: random.Random) -> None:
    decisions = apply_policy(backups, policy, now)
    # every input exactly once, newest first
    assert sorted(d.backup.id for d in decisions) == sorted(b.id for b in backups)
    assert [d.backup.time for d in decisions] == sorted((b.time for b in backups), reverse=True)
    if policy.keep_within is None:
        check_invariants(decisions, policy)
    complete = [d for d in decisions if d.backup.complete]
    if complete:
        assert complete[0].keep and complete[0].reasons[0] == "newest"
    for d in decisions:
        if d.backup.complete:
            assert d.keep == bool(d.reasons)
        else:
            assert d.reasons in (("in progress?",), ("incomplete",))
            assert d.keep == (d.backup.time > now - timedelta(days=1))
    # input order does not matter
    shuffled = backups[:]
    rnd.shuffle(shuffled)
    assert apply_policy(shuffled, policy, now) == decisions
    # idempotent: what was kept stays kept, for the same reasons
    again = apply_policy([d.backup for d in decisions if d.keep], policy, now)
    assert again == [d for d in decisions if d.keep]
    # a dump is never due for a period whose current bucket already has a complete backup
    periods = ["hourly", "daily", "weekly", "monthly", "yearly"]
    due = due_periods(backups, policy, now)
    if any(getattr(policy, p) for p in periods):
        assert set(due) <= {p for p in periods if getattr(policy, p)}
        assert due_periods(backups + [BackupRef("new", now)], policy, now) == []
    else:
        assert due and set(due) <= {"last", "within"}
