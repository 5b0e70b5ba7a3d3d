"""How long to wait before the next try: exponential, capped, with full jitter.

A venue that drops every collector at once (a deploy, a network blip) must not see them
all come back in the same millisecond, and a venue that refuses us must not be asked
again in a tight loop. So each wait is drawn uniformly from ``[0, min(cap, base * 2**n)]``
("full jitter", the AWS architecture blog's measured best), with a floor so that even
the luckiest draw leaves the venue a moment. A connection that worked for a while
resets the count: one failure a day should retry at once, not after the cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """The waits of one retry loop (a connection, a venue's REST snapshots)."""

    base_s: float = 0.5
    cap_s: float = 30.0
    floor_s: float = 0.05
    failures: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next_wait(self) -> float:
        """The wait before the next try, counting this failure."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return max(self.floor_s, self._random.uniform(0.0, ceiling))

    def reset(self) -> None:
        """The last try worked: the next failure waits about ``base_s`` again."""
        self.failures = 0
