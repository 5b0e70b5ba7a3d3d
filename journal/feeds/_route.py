"""Where a received message goes, as each venue's ``route`` function says."""

from __future__ import annotations

from typing import Any, NamedTuple


class Route(NamedTuple):
    """A message's type, and for order-book data the venue's symbol and the part of the
    message its builder reads. Messages of other types (trades, tickers, klines,
    subscription acknowledgements) have no symbol: they are counted by type and not
    used, for they carry no order-book data."""

    kind: str
    symbol: str | None
    body: Any
