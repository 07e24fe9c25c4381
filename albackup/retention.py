"""Retention as a pure function: backups + policy + now → which to keep, which to remove, and why.

Nothing here reads a clock, a file or a storage location; ``api`` lists the backups, asks
:func:`apply_policy` what to do, and removes what it is told. Standard library only.

The rules (restic/borg style)
-----------------------------

* Only **complete** backups (those with a manifest) are considered by the rules, sorted newest
  first by time (ties broken by id, so the result never depends on the input order).
* ``keep_last N`` keeps the N newest complete backups (reason ``"last N"``).
* ``keep_within D`` keeps every complete backup strictly newer than ``now - D`` (reason
  ``"within 7d"``). Backups dated after ``now`` (clock skew) count as within.
* ``hourly``, ``daily``, ``weekly``, ``monthly``, ``yearly`` with count N: walk newest → oldest;
  the newest backup of each distinct period bucket is kept, until N buckets have been kept
  (reason ``"daily 2026-11-22"``). Buckets are those that *have* a backup: ``daily 7`` keeps the
  last backup of each of the 7 most recent days that have one, not of the last 7 calendar days.
  Buckets are computed in UTC; weeks are ISO weeks (Monday to Sunday, labelled with the ISO year,
  so 2026-12-31 and 2027-01-01 are both in ``2026-W53``). Labels:
  ``2026-11-22T09`` (hour), ``2026-11-22`` (day), ``2026-W47`` (week), ``2026-11`` (month),
  ``2026`` (year).
* One backup may be kept by several rules (the newest backup of a month can be the daily, weekly
  and monthly one); its decision lists every reason, in the order newest, last, within, hourly,
  daily, weekly, monthly, yearly.
* The newest complete backup is **always** kept, with reason ``"newest"``, even if no rule asks
  for it: a policy never leaves a database without its latest backup.
* An **incomplete** backup is never kept by a rule and never counted by one. It is removed
  (reason ``"incomplete"``), except when it is newer than ``now - 1 day``: a run may still be
  writing it, so it is kept with reason ``"in progress?"`` and removed by a later prune.
* A removed complete backup has no reasons (reasons say why a backup is kept).
* The result has one :class:`Decision` per input backup, newest first. Applying the policy again
  to what it kept keeps all of it, with the same reasons (idempotent for a fixed ``now``).

An empty policy (all counts zero, no ``keep_within``) is refused with :class:`ConfigError`: it
would delete every backup but the newest.

Policy settings
---------------

``keep_last``, ``hourly``, ``daily``, ``weekly``, ``monthly``, ``yearly``: non-negative whole
numbers. ``keep_within``: a duration written like restic's, one or more ``<number><unit>``
with units ``y`` (year = 365 days), ``m`` (month = 30 days; there is no minutes unit),
``w`` (week), ``d`` (day), ``h`` (hour), each unit at most once: ``"36h"``, ``"7d"``, ``"2w"``,
``"1y"``, ``"2y5m7d3h"``. Years and months are fixed lengths, not calendar arithmetic.

When is a dump due?
-------------------

:func:`due_periods` tells the scheduled run which configured periods have no complete backup in
the bucket that ``now`` falls in (``["hourly", "daily"]``), and ``[]`` when nothing is due. With
no period rule configured (only ``keep_last`` and/or ``keep_within``) every call is due
(``["last"]``, ``["within"]`` or both). Incomplete backups do not count: a failed run leaves the
period due.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from .errors import ConfigError

IN_PROGRESS_WINDOW = timedelta(days=1)  # an incomplete backup newer than this may still be written

_UNIT_LENGTH = {"y": timedelta(days=365), "m": timedelta(days=30), "w": timedelta(weeks=1),
                "d": timedelta(days=1), "h": timedelta(hours=1)}
_DURATION = re.compile(r"(?:\d+[ymwdh])+")
_DURATION_PART = re.compile(r"(\d+)([ymwdh])")
_COUNT_KEYS = ("keep_last", "hourly", "daily", "weekly", "monthly", "yearly")


def _hour(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}"


def _day(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"


def _week(t: datetime) -> str:
    iso = t.isocalendar()
    return f"{iso.year:04d}-W{iso.week:02d}"


def _month(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def _year(t: datetime) -> str:
    return f"{t.year:04d}"


# name → bucket label of a UTC time; in the order reasons and due periods are listed
PERIODS: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("hourly", _hour), ("daily", _day), ("weekly", _week), ("monthly", _month), ("yearly", _year))


@dataclass(frozen=True)
class Policy:
    """How many backups to keep per rule; see the module docstring for the semantics."""

    keep_last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    keep_within: timedelta | None = None

    def __post_init__(self) -> None:
        for key in _COUNT_KEYS:
            value = getattr(self, key)
            if type(value) is not int or value < 0:
                raise ValueError(f"Policy.{key} must be a non-negative int, got {value!r}")
        if self.keep_within is not None and (not isinstance(self.keep_within, timedelta)
                                             or self.keep_within <= timedelta(0)):
            raise ValueError(f"Policy.keep_within must be a positive timedelta or None, got {self.keep_within!r}")

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], keypath: str = "retention") -> Policy:
        """Build a policy from config (YAML/JSON) values; every problem is a ConfigError naming the key path."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{keypath}: expected a mapping of retention rules, got {_kind(d)}")
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, value in d.items():
            path = f"{keypath}.{key}"
            if key not in known:
                raise ConfigError(f"{path}: unknown key; {_hint(str(key), known)}")
            if key == "keep_within":
                values[key] = parse_duration(value, path)
            else:
                values[key] = _count(value, path)
        policy = cls(**values)
        if policy.is_empty():
            raise ConfigError(_empty_message(keypath))
        return policy

    def is_empty(self) -> bool:
        """True when no rule keeps anything (such a policy is refused)."""
        return self.keep_within is None and not any(getattr(self, k) for k in _COUNT_KEYS)


@dataclass(frozen=True)
class BackupRef:
    """One backup as retention sees it: its id, its (aware) time, and whether it has a manifest."""

    id: str
    time: datetime
    complete: bool = True

    def __post_init__(self) -> None:
        _utc(self.time, f"BackupRef {self.id!r} time")


@dataclass(frozen=True)
class Decision:
    """Keep or remove one backup, and why it is kept (or "incomplete" for a removed incomplete one)."""

    backup: BackupRef
    keep: bool
    reasons: tuple[str, ...]


def apply_policy(backups: Sequence[BackupRef], policy: Policy, now: datetime) -> list[Decision]:
    """One decision per backup, newest first. Raises ConfigError for an empty policy,
    ValueError for a naive time or a backup id given twice."""
    _refuse_empty(policy)
    now_utc = _utc(now, "now")
    ordered = _newest_first(backups)
    times = [_utc(b.time, "") for b in ordered]
    complete = [i for i, b in enumerate(ordered) if b.complete]
    reasons: list[list[str]] = [[] for _ in ordered]
    if complete:
        reasons[complete[0]].append("newest")
    _keep_last(complete, policy.keep_last, reasons)
    _keep_within(times, complete, policy.keep_within, now_utc, reasons)
    for name, bucket in PERIODS:
        _keep_buckets(times, complete, name, bucket, getattr(policy, name), reasons)
    return [_decide(b, t, tuple(r), now_utc) for b, t, r in zip(ordered, times, reasons)]


def due_periods(backups: Sequence[BackupRef], policy: Policy, now: datetime) -> list[str]:
    """The configured periods with no complete backup in the bucket of ``now``; [] when no dump is due."""
    _refuse_empty(policy)
    now_utc = _utc(now, "now")
    rules = [(name, bucket) for name, bucket in PERIODS if getattr(policy, name)]
    if not rules:
        return [name for name, on in (("last", policy.keep_last > 0), ("within", policy.keep_within is not None))
                if on]
    times = [_utc(b.time, f"backup {b.id!r} time") for b in backups if b.complete]
    return [name for name, bucket in rules if bucket(now_utc) not in {bucket(t) for t in times}]


def parse_duration(value: Any, keypath: str = "retention.keep_within") -> timedelta:
    """``"2y5m7d3h"`` → timedelta (y = 365 days, m = 30 days); a timedelta is taken as is."""
    example = 'write e.g. "36h", "7d", "2w", "6m" or "1y" (units y, m = months, w, d, h)'
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ConfigError(f"{keypath}: must be a positive duration, got {value}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{keypath}: expected a duration, got {_kind(value)}; {example}")
    text = value.strip()
    if not _DURATION.fullmatch(text):
        raise ConfigError(f"{keypath}: {value!r} is not a duration; {example}")
    parts = _DURATION_PART.findall(text)
    units = [u for _, u in parts]
    if len(set(units)) != len(units):
        raise ConfigError(f"{keypath}: {value!r} gives a unit twice; {example}")
    total = sum((int(n) * _UNIT_LENGTH[u] for n, u in parts), timedelta(0))
    if total <= timedelta(0):
        raise ConfigError(f"{keypath}: {value!r} is zero; leave keep_within out instead")
    return total


def format_duration(d: timedelta) -> str:
    """A timedelta as in reasons: ``7d``, ``1d12h``, ``36h`` → ``1d12h``; odd values as str(timedelta)."""
    if d.microseconds or d.seconds % 3600:
        return str(d)
    days, hours = d.days, d.seconds // 3600
    return (f"{days}d" if days else "") + (f"{hours}h" if hours else "")


# ---------------------------------------------------------------- the rules, one step each

def _keep_last(complete: list[int], n: int, reasons: list[list[str]]) -> None:
    for i in complete[:n]:
        reasons[i].append(f"last {n}")


def _keep_within(times: list[datetime], complete: list[int], within: timedelta | None, now: datetime,
                 reasons: list[list[str]]) -> None:
    if within is None:
        return
    cutoff = now - within
    for i in complete:
        if times[i] > cutoff:
            reasons[i].append(f"within {format_duration(within)}")


def _keep_buckets(times: list[datetime], complete: list[int], name: str, bucket: Callable[[datetime], str],
                  n: int, reasons: list[list[str]]) -> None:
    seen: set[str] = set()
    for i in complete:
        if len(seen) >= n:
            return
        label = bucket(times[i])
        if label not in seen:
            seen.add(label)
            reasons[i].append(f"{name} {label}")


def _decide(backup: BackupRef, time: datetime, reasons: tuple[str, ...], now: datetime) -> Decision:
    if backup.complete:
        return Decision(backup, bool(reasons), reasons)
    if time > now - IN_PROGRESS_WINDOW:
        return Decision(backup, True, ("in progress?",))
    return Decision(backup, False, ("incomplete",))


# ---------------------------------------------------------------- helpers

def _newest_first(backups: Sequence[BackupRef]) -> list[BackupRef]:
    seen: set[str] = set()
    for b in backups:
        if b.id in seen:
            raise ValueError(f"backup id {b.id!r} given twice; retention needs unique ids")
        seen.add(b.id)
    return sorted(backups, key=lambda b: (_utc(b.time, ""), b.id), reverse=True)


def _utc(t: Any, what: str) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what or 'time'} must be an aware datetime, got {t!r}")
    return t.astimezone(timezone.utc)


def _refuse_empty(policy: Policy) -> None:
    if policy.is_empty():
        raise ConfigError(_empty_message("retention"))


def _empty_message(keypath: str) -> str:
    rules = ", ".join((*_COUNT_KEYS, "keep_within"))
    return (f"{keypath}: an empty retention policy would delete everything; refusing "
            f"(set at least one of {rules})")


def _count(value: Any, path: str) -> int:
    if type(value) is not int or value < 0:
        raise ConfigError(f"{path}: expected a non-negative whole number (0 = rule off), got {_kind(value)}")
    return value


def _hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
    return "known keys: " + ", ".join(f"`{k}`" for k in known)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__
