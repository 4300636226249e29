"""Time as the Kubernetes API writes it; the one clock of the kbmc and the controller."""

from __future__ import annotations

import datetime


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def rfc3339(at: datetime.datetime | None = None) -> str:
    """A metav1.Time: whole seconds (the API server drops anything finer)."""
    return (at or now()).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_up(at: datetime.datetime) -> str:
    """A metav1.Time not before `at`: its whole second, or the next one when `at` falls inside it."""
    ceiling = at if at.microsecond == 0 else at.replace(microsecond=0) + datetime.timedelta(seconds=1)
    return rfc3339(ceiling)


def micro(at: datetime.datetime | None = None) -> str:
    """A metav1.MicroTime (an Event's eventTime): microseconds, so Events of one second keep their order."""
    return (at or now()).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(value: str) -> datetime.datetime | None:
    """An RFC 3339 time as the API serves it; None when it is not one. A time without a zone is UTC."""
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
