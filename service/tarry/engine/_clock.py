"""The store's clock as seen from this process.

Timers and leases are decided on Redis's clock, never a host's: the scripts read `TIME`
themselves, and what the engine computes (a sleep's wake time, whether a timer is due) uses
this clock, the host's time corrected by an offset measured against the store. So servers
whose clocks disagree still agree on when a timer is due and when a lease runs out.
"""

from __future__ import annotations

import time

MAX_RTT = 0.05
"""A measurement whose round trip took longer than this (seconds) is too blurred to use."""


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0
        """Seconds to add to this host's clock to get the store's."""
        self._best_rtt = MAX_RTT

    def time(self) -> float:
        """The store's time, in seconds since the epoch."""
        return time.time() + self.offset

    def now_ms(self) -> int:
        return int((time.time() + self.offset) * 1000)

    def observe(self, store_time: float, sent: float, received: float) -> None:
        """Take a reading of the store's clock (`store_time`) that was asked for at host
        time `sent` and answered at `received`. The store read its clock somewhere in
        between: the midpoint is off by at most half the round trip, so a reading is taken
        when its round trip is close to the best one seen (or when the offset moved by more
        than a round trip: the host's clock was set)."""
        rtt = received - sent
        if rtt > MAX_RTT:
            return
        offset = store_time - (sent + received) / 2
        if rtt <= self._best_rtt * 2 or abs(offset - self.offset) > MAX_RTT:
            self.offset = offset
            self._best_rtt = min(self._best_rtt, rtt)
