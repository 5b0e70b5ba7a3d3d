"""``journal collect``'s arguments and config: what it is asked to do, and every
mistake refused (exit 2, one line naming it) before anything connects."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from journal import Writer
from journal.cli import main
from journal.collect._config import ConfigError, build_plan, parse_pairs
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "collect.toml"


@pytest.fixture
def root():
    path = Path("/dev/shm") / f"collect-plan-{uuid.uuid4().hex[:8]}"
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_pairs_are_normalised_in_every_spelling():
    wanted = parse_pairs(
        [
            "binance:BTCUSDT",
            "binance:ETH-USDT",
            "binance_future:BTC",
            "bybitfuture:SOLUSDT",
            "bybit:XRP",
            "upbit:KRW-BTC",
            "upbit:USDT",
            "bithumb:BTC_KRW",
            "bithumb:ETH",
            "binance:BTCUSDT",  # twice: once
        ]
    )
    assert wanted == {
        "binance": ["BTC-USDT", "ETH-USDT"],
        "binance-futures": ["BTC-USDT"],
        "bybit-futures": ["SOL-USDT"],
        "bybit": ["XRP-USDT"],
        "upbit": ["BTC-KRW", "USDT-KRW"],
        "bithumb": ["BTC-KRW", "ETH-KRW"],
    }


def test_the_example_config_is_what_the_radar_needs():
    plan = build_plan([], config=EXAMPLE, journal_root=None, depth=None)
    venues = {venue.venue.name: venue for venue in plan.venues}
    assert set(venues) == {
        "binance",
        "binance-futures",
        "bybit",
        "bybit-futures",
        "upbit",
        "bithumb",
    }
    for name, venue in venues.items():
        quote = "KRW" if name in ("upbit", "bithumb") else "USDT"
        bases = {"BTC", "ETH", "XRP", "SOL"} | ({"USDT"} if quote == "KRW" else set())
        assert set(venue.symbols) == {f"{base}-{quote}" for base in bases}, name
        assert venue.journal == Path("/dev/shm/books") / name
        assert venue.depth == 10
        assert venue.ws_url.startswith("wss://")


def test_urls_given_replace_the_venues_and_the_options_win_over_the_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        'journal_root = "/dev/shm/x"\ndepth = 5\n[venues.binance]\nsymbols = ["BTCUSDT"]\n'
        'ws_url = "ws://10.0.0.1:1"\n'
    )
    plan = build_plan(
        ["upbit:BTC"],
        config=config,
        journal_root=Path("/dev/shm/y"),
        depth=3,
        ws_urls=["binance=ws://127.0.0.1:9000"],
        rest_urls=["binance=http://127.0.0.1:9001"],
        silences=["upbit=120"],
    )
    binance, upbit = plan.venues
    assert (binance.ws_url, binance.rest_url) == ("ws://127.0.0.1:9000", "http://127.0.0.1:9001")
    assert binance.journal == Path("/dev/shm/y/binance") and binance.depth == 3
    assert upbit.symbols == ("BTC-KRW",) and upbit.rest_url is None
    assert upbit.venue.silence_s == 120 and binance.venue.silence_s == 10


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["binance"], "expected VENUE:SYMBOL"),
        (["kraken:BTCUSD"], "venue 'kraken' is not one of"),
        (["binance:"], "expected VENUE:SYMBOL"),
        (["upbit:BTC/KRW"], "upbit symbol 'BTC/KRW'"),
        (["binance:BTCUSDT", "--depth", "0"], "depth 0"),
        (["binance:BTCUSDT", "--depth", "1001"], "depth 1001"),
        (["binance:BTCUSDT", "--ws-url", "binance"], "expected VENUE=URL"),
        (["binance:BTCUSDT", "--ws-url", "binance=http://x"], "is not a wss/ws URL"),
        (["binance:BTCUSDT", "--rest-url", "upbit=http://127.0.0.1:1"], "upbit"),
        (["binance:BTCUSDT", "--rest-url", "binance=ws://127.0.0.1:1"], "https/http"),
        (["binance:BTCUSDT", "--ws-url", "binance=ws://127.0.0.1:99999"], "Port out of range"),
        ([], "nothing to collect"),
        (["binance:BTCUSDT", "--silence-limit", "binance=0.5"], "1 or more"),
        (["binance:BTCUSDT", "--silence-limit", "binance"], "VENUE=SECONDS"),
        (["binance:BTCUSDT", "--silence-limit", "upbit=5"], "silence limit is given for upbit"),
        (["binance:BTCUSDT", "--ws-url", "upbit=ws://h:1"], "ws_url is given for upbit"),
    ],
)
def test_usage_errors_exit_2_with_what_is_wrong(arguments, says, root, capsys):
    status = main(["collect", *arguments, "--journal-root", str(root), "--duration", "1"])
    error = capsys.readouterr().err
    assert status == 2, error
    assert says in error and "Traceback" not in error
    assert not root.exists()  # nothing created


def test_no_journal_root_is_a_usage_error(capsys):
    assert main(["collect", "binance:BTCUSDT", "--duration", "1"]) == 2
    assert "--journal-root" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("journal_root = '/dev/shm/x'\nspeed = 1\n", "unknown key speed"),
        ("[venues.binance]\nsymbols = []\n", "symbols must be a non-empty list"),
        ("[venues.binance]\nsymbols = ['BTCUSDT']\nwsurl = 'x'\n", "unknown key wsurl"),
        ("[venues.krak]\nsymbols = ['BTCUSD']\n", "venue 'krak'"),
        ("[venues.binance\n", "not valid TOML"),
        ("depth = 'ten'\n[venues.binance]\nsymbols = ['BTCUSDT']\n", "depth 'ten'"),
        ("[venues.binance]\nsymbols = ['BTCUSDT']\nsilence_s = true\n", "silence_s"),
        (
            "[venues.bybit]\nsymbols = ['BTCUSDT']\nrest_url = 'http://h:1'\n",
            "rest_url is given for bybit",
        ),
    ],
)
def test_config_mistakes_name_the_file_and_key(text, says, tmp_path, root, capsys):
    config = tmp_path / "collect.toml"
    config.write_text(text)
    status = main(["collect", "--config", str(config), "--journal-root", str(root)])
    error = capsys.readouterr().err
    assert status == 2 and says in error, error
    assert str(config) in error or "depth" in says or "given for" in says


def test_a_journal_root_that_is_not_a_path_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "collect.toml"
    config.write_text("journal_root = 5\n[venues.binance]\nsymbols = ['BTCUSDT']\n")
    assert main(["collect", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "journal_root 5" in error and "Traceback" not in error


def test_a_websocket_elsewhere_without_its_rest_is_warned_about(root, capsys):
    from journal.collect._config import build_plan as plan_of

    plan = plan_of(
        ["binance:BTCUSDT", "upbit:BTC"],
        config=None,
        journal_root=root,
        depth=None,
        ws_urls=["binance=ws://127.0.0.1:9", "upbit=ws://127.0.0.1:9"],
    )
    [warning] = plan.warnings
    assert "binance" in warning and "https://api.binance.com" in warning and "--rest-url" in warning


def test_a_missing_config_file_is_a_usage_error(tmp_path, capsys):
    assert main(["collect", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_a_journal_held_by_another_writer_exits_2_before_connecting(root, capsys):
    with Writer(root / "binance"):
        status = main(
            [
                "collect",
                "binance:BTCUSDT",
                "--journal-root",
                str(root),
                "--duration",
                "1",
                "--ws-url",
                "binance=ws://127.0.0.1:9",
                "--rest-url",
                "binance=http://127.0.0.1:9",
            ]
        )
    error = capsys.readouterr().err
    assert status == 2 and "binance" in error, error


def test_config_error_is_a_value_error():
    with pytest.raises(ConfigError):
        parse_pairs(["nope"])
