"""deploybot.yml's `review:` section: when each channel's weekly review is posted, and what it covers."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CRON_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
ChannelId = Annotated[str, Field(pattern=r"^[CG][A-Z0-9]{4,}$")]


def _weekday(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in DAYS:
        return value.lower()
    raise ValueError(f"must be a day of the week ({', '.join(DAYS)}), not {value!r}")


def _clock_time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 16:00 as the number 960 (base 60): say what was meant.
        hours, minutes = divmod(value, 60)
        meant = f"{hours:02d}:{minutes:02d}" if 0 <= value < 24 * 60 else "16:00"
        raise ValueError(f'must be a time in quotes: write time: "{meant}" (unquoted, YAML reads it as a number)')
    if isinstance(value, str) and _TIME.match(value):
        return value
    raise ValueError(f'must be a 24-hour time HH:MM in quotes, e.g. "09:00", not {value!r}')


class ChannelReview(BaseModel):
    """What one channel's review does differently; a field left out follows `review:`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    day: str | None = None
    time: str | None = None
    weeks: Annotated[int, Field(ge=1, le=104)] | None = None
    environment: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = None

    @field_validator("day", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        return None if value is None else _weekday(value)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        return None if value is None else _clock_time(value)


class ReviewSettings(BaseModel):
    """The weekly review: on by default, Monday 09:00 in the team's zone, eight weeks charted, every environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    day: str = "monday"
    time: str = "09:00"
    weeks: Annotated[int, Field(ge=1, le=104)] = 8
    # The environment whose figures the review shows; None: every environment together.
    environment: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = None
    channels: dict[ChannelId, ChannelReview] = {}

    @field_validator("day", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        return _weekday(value)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        return _clock_time(value)

    def describe(self, zone: str) -> str:
        """One line for `deploybot check`: when reviews go out, and which channels differ."""
        if not self.enabled:
            on = [channel for channel, own in self.channels.items() if own.enabled]
            return f"weekly review only in {', '.join(on)}" if on else "weekly review off"
        differ = f", {len(self.channels)} channel(s) set apart" if self.channels else ""
        return (
            f"weekly review {self.day.capitalize()}s {self.time} {zone} in each deployment channel, "
            f"{self.weeks} weeks charted{differ}"
        )

    def for_channel(self, channel_id: str) -> Schedule:
        """The review of one channel: this section with the channel's own settings over it."""
        own = self.channels.get(channel_id, ChannelReview())
        return Schedule(
            channel_id=channel_id,
            enabled=self.enabled if own.enabled is None else own.enabled,
            day=own.day or self.day,
            time=own.time or self.time,
            weeks=own.weeks or self.weeks,
            environment=own.environment or self.environment,
            listed=channel_id in self.channels,
        )


class Schedule(BaseModel):
    """When one channel's review is posted and what it covers."""

    model_config = ConfigDict(frozen=True)

    channel_id: str
    enabled: bool
    day: str
    time: str
    weeks: int
    environment: str | None
    listed: bool  # named under review › channels: reviewed even before its first deployment

    @property
    def cron(self) -> str:
        hour, minute = self.time.split(":")
        return f"{int(minute)} {int(hour)} * * {CRON_DAYS[DAYS.index(self.day)]}"
