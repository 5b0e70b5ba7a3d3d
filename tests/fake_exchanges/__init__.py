"""Fake exchanges for the collector's tests: each venue's documented public protocol,
served on 127.0.0.1 from a thread of the test process, with faults on demand.

    with FakeBinance(faults=[Fault(FaultKind.DROP, connection=1, after=30)]) as fake:
        run `journal collect binance:NKNUSDT --ws-url binance=<fake.ws_url>
             --rest-url binance=<fake.rest_url> ...`
        record = fake.snapshot()          # every frame sent and received, per connection
        states = reference.rebuild(record, depth=10)   # the books a correct client may show

Each fake is written from the venue's documentation (the module docstrings cite
it), not from the collector, and replays the recorded captures in
tests/data/exchange-captures (Bybit's converted from its retired v2 protocol to v5)
before going on with synthetic updates. ``reference`` rebuilds, by the venues' rules
alone, every book a correct client could publish from what a fake sent.
"""

from tests.fake_exchanges._binance import BinanceMarket, FakeBinance
from tests.fake_exchanges._binance import captured_markets as binance_captured
from tests.fake_exchanges._binance import synthetic_market as binance_synthetic
from tests.fake_exchanges._bybit import BybitMarket, FakeBybit
from tests.fake_exchanges._bybit import captured_markets as bybit_captured
from tests.fake_exchanges._bybit import synthetic_market as bybit_synthetic
from tests.fake_exchanges._server import (
    ConnectionRecord,
    FakeExchange,
    FakeRecord,
    Fault,
    FaultKind,
    Received,
    RestCall,
    RestFault,
    Sent,
)
from tests.fake_exchanges._upbit import FakeBithumb, FakeUpbit, FullBookMarket
from tests.fake_exchanges._upbit import captured_market as upbit_captured
from tests.fake_exchanges._upbit import synthetic_market as full_book_synthetic

__all__ = [
    "BinanceMarket",
    "BybitMarket",
    "ConnectionRecord",
    "FakeBinance",
    "FakeBithumb",
    "FakeBybit",
    "FakeExchange",
    "FakeRecord",
    "FakeUpbit",
    "Fault",
    "FaultKind",
    "FullBookMarket",
    "Received",
    "RestCall",
    "RestFault",
    "Sent",
    "binance_captured",
    "binance_synthetic",
    "bybit_captured",
    "bybit_synthetic",
    "full_book_synthetic",
    "upbit_captured",
]
