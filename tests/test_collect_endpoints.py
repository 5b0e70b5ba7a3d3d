"""A gateway may serve only one of the endpoint forms Binance documents: the combined
``/stream?streams=``, the raw ``/ws`` with SUBSCRIBE, or the raw ``/ws/<stream>``.
Answered 404, ``journal collect`` tries the next form and keeps the one that works."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.fake_exchanges import FakeBinance
from tests.fake_exchanges.collect import Collect, Venues

pytestmark = pytest.mark.slow


class RawOnlyBinance(FakeBinance):
    """Serves ``/ws/<stream>`` (and REST) only, as the local-order-book guide's
    ``wss://stream.binance.com:9443/ws/bnbbtc@depth`` example: 404 elsewhere."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/{streams:.+}", self.serve_websocket)
        app.router.add_get(self.depth_path, self.serve_depth)


class RawSubscribeBinance(FakeBinance):
    """Serves the raw ``/ws`` endpoint with SUBSCRIBE only."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self.serve_websocket)
        app.router.add_get(self.depth_path, self.serve_depth)


@pytest.mark.parametrize(
    ("fake_type", "symbols", "path"),
    [
        (RawOnlyBinance, {"NKNUSDT": "NKN-USDT"}, "/ws/nknusdt@depth@100ms"),
        (RawSubscribeBinance, {"NKNUSDT": "NKN-USDT", "LRCBTC": "LRC-BTC"}, "/ws"),
    ],
)
def test_a_gateway_of_one_endpoint_form_is_found(
    venues: Venues, collect: Collect, fake_type: type[FakeBinance], symbols: dict, path: str
) -> None:
    fake = venues(fake_type(tick_s=0.01))
    run = collect([f"binance:{s}" for s in symbols], {"binance": fake})
    for symbol in symbols.values():
        run.wait_books("binance", 50, symbol)
    run.stop()
    run.verify("binance", fake, symbols)
    served = [connection.path for connection in fake.snapshot().connections]
    assert served and set(served) == {path}, served
