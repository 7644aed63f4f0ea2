"""The web workers' ``Date`` header, formatted once a second (:class:`dmr_core.web_worker.HttpDate`)."""

import email.utils

from gunicorn import util

from dmr_core import web_worker
from dmr_core.web_worker import HttpDate


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_it_says_what_gunicorn_says_within_a_second_and_across_the_next(monkeypatch):
    clock = Clock(1_780_000_000.25)
    monkeypatch.setattr(web_worker.time, "time", clock)
    http_date = HttpDate()
    first = http_date()
    assert first == util.http_date(clock.now) == "Thu, 28 May 2026 20:26:40 GMT"
    clock.now += 0.7  # the same second
    assert http_date() == first
    clock.now += 0.1  # the next one
    assert http_date() == util.http_date(clock.now) != first


def test_a_given_timestamp_is_formatted_as_given():
    assert HttpDate()(0) == "Thu, 01 Jan 1970 00:00:00 GMT" == email.utils.formatdate(0, usegmt=True)
