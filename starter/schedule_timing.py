"""When a vmsnap schedule fires: a cron expression or an interval, jitter, a time zone.

Temporal parses the same cron syntax, but only when the schedule is created, with a
message about its own parser; checking here first names the bad field to the user
before anything is contacted. `ScheduleTiming` is also what a schedule keeps in its
memo, so `vmsnap schedule get` can show the timing as it was given.
"""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from temporalio.client import ScheduleIntervalSpec, ScheduleSpec

from rules.durations import format_go_duration
from rules.validation import Duration

_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                 "@hourly"}
_CRON_FIELDS = [("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, {m: i + 1 for i, m in enumerate(
                    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                     "nov", "dec"])}),
                ("day of week", 0, 7, {d: i for i, d in enumerate(
                    ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])})]


def check_cron(expression: str) -> str:
    """A standard 5-field cron expression (or @daily, @hourly, ...); ValueError naming the
    bad field. Temporal reads the same syntax; checked here so the user hears it first."""
    text = " ".join(expression.split())
    if text.lower() in _CRON_ALIASES:
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"cron expression {expression!r} must have 5 fields "
                         "(minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\"")
    for value, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in value.split(","):
            _check_cron_part(part, what, low, high, names, expression)
    return text


def _check_cron_part(part: str, what: str, low: int, high: int, names: dict[str, int],
                     expression: str) -> None:
    def bad(why: str) -> ValueError:
        return ValueError(f"cron expression {expression!r}: {what} {part!r} {why}")

    def number(token: str) -> int:
        if token.lower() in names:
            return names[token.lower()]
        if not token.isdigit():
            raise bad(f"is not a number{' or a name' if names else ''}")
        value = int(token)
        if not low <= value <= high:
            raise bad(f"is out of range {low}-{high}")
        return value

    base, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        raise bad("has an invalid step")
    if base in ("*", "?"):
        return
    start, dash, end = base.partition("-")
    if not start:
        raise bad("is empty")
    first = number(start)
    if dash and number(end) < first:
        raise bad("is a backwards range")


class ScheduleTiming(BaseModel):
    """When a schedule fires: a cron expression or a fixed interval, plus jitter."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    every: Duration | None = None
    jitter: Duration = 0.0
    time_zone: str | None = Field(default=None, description="for cron; default UTC")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("every")
    @classmethod
    def _every(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError(f"the interval must be at least 1s, not {format_go_duration(value)}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _one_spec(self) -> ScheduleTiming:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of a cron expression and an interval (every)")
        if self.every is not None and self.jitter >= self.every:
            raise ValueError("the jitter must be shorter than the interval")
        return self

    def describe(self) -> str:
        """One line for notes and tables: `cron '0 2 * * *' Europe/Paris, jitter 5m0s`."""
        every = format_go_duration(self.every or 0)
        when = f"cron {self.cron!r}" if self.cron else f"every {every}"
        if self.cron and self.time_zone:
            when += f" {self.time_zone}"
        if self.jitter:
            when += f", jitter {format_go_duration(self.jitter)}"
        return when

    def spec(self) -> ScheduleSpec:
        """The same timing as Temporal's schedule spec."""
        return ScheduleSpec(
            cron_expressions=[self.cron] if self.cron else [],
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=self.every))]
            if self.every else [],
            jitter=timedelta(seconds=self.jitter) if self.jitter else None,
            time_zone_name=self.time_zone)
