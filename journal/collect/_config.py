"""What ``journal collect`` is asked to do: from ``VENUE:SYMBOL`` arguments, a TOML
file, or both (the arguments add symbols; their options win over the file's).

    journal_root = "/dev/shm/books"      # one journal per venue under it
    depth = 10                           # levels per side journaled
    [venues.binance]
    symbols = ["BTCUSDT", "ETHUSDT"]
    ws_url = "wss://stream.binance.com:9443"   # optional: a proxy, a gateway, a test
    rest_url = "https://api.binance.com"       # optional
    silence_s = 10                             # optional: the silence limit (s)
    [venues.upbit]
    symbols = ["KRW-BTC", "USDT"]              # any spelling journal.symbols reads

Every mistake is a ConfigError naming the file, the key and the value, raised before
anything is opened or connected.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from journal.collect._protocol import check_url
from journal.collect._venue import VenuePlan
from journal.collect._venues import VENUES
from journal.symbols import UnknownNameError, normalize, normalize_exchange

DEFAULT_DEPTH: Final = 10
MAX_DEPTH: Final = 1000
"""The deepest book any venue here keeps: Binance's 1000-level snapshot, Bybit's
orderbook.1000 (Upbit and Bithumb send 15 or 30 levels whatever is asked)."""
_TOP_KEYS: Final = {"journal_root", "depth", "venues"}
_VENUE_KEYS: Final = {"symbols", "ws_url", "rest_url", "silence_s"}


class ConfigError(ValueError):
    """A collect request that cannot be carried out as given."""


@dataclass(frozen=True, slots=True)
class CollectPlan:
    root: Path
    depth: int
    venues: tuple[VenuePlan, ...]
    warnings: tuple[str, ...] = ()  # said on stderr before collecting


def venue_name(text: str, where: str) -> str:
    """A venue ``journal collect`` speaks to, in any spelling journal.symbols reads."""
    try:
        name = normalize_exchange(text)
    except UnknownNameError:
        name = text
    if name not in VENUES:
        raise ConfigError(f"{where}: venue {text!r} is not one of {', '.join(VENUES)}")
    return name


def parse_pairs(pairs: Iterable[str]) -> dict[str, list[str]]:
    """``["binance:BTCUSDT", "upbit:KRW-BTC"]`` -> ``{"binance": ["BTC-USDT"], ...}``."""
    wanted: dict[str, list[str]] = {}
    for pair in pairs:
        venue, colon, symbol = pair.partition(":")
        if not colon or not venue or not symbol:
            raise ConfigError(
                f"{pair!r}: expected VENUE:SYMBOL, e.g. binance:BTCUSDT or upbit:KRW-BTC"
            )
        name = venue_name(venue, repr(pair))
        _add_symbol(wanted.setdefault(name, []), name, symbol, repr(pair))
    return wanted


def _add_symbol(symbols: list[str], venue: str, symbol: Any, where: str) -> None:
    if not isinstance(symbol, str):
        raise ConfigError(f"{where}: symbol {symbol!r} is not a string")
    try:
        _, name = normalize(venue, symbol)
    except UnknownNameError as error:
        raise ConfigError(f"{where}: {error}") from None
    if name not in symbols:
        symbols.append(name)


def _urls(text: Sequence[str], option: str, schemes: tuple[str, ...]) -> dict[str, str]:
    urls = {}
    for item in text:
        venue, equals, url = item.partition("=")
        if not equals:
            example = f"binance={schemes[0]}://127.0.0.1:9000"
            raise ConfigError(f"{option} {item!r}: expected VENUE=URL, e.g. {example}")
        name = venue_name(venue, f"{option} {item!r}")
        try:
            urls[name] = check_url(url, schemes)
        except ValueError as error:
            raise ConfigError(f"{option} {item!r}: {error}") from None
    return urls


def _seconds(value: object, where: str) -> float:
    """A silence limit: a number of seconds, at least one second."""
    try:
        seconds = float("nan") if isinstance(value, bool) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds >= 1.0 or seconds == float("inf"):
        raise ConfigError(f"{where}: {value!r} is not a number of seconds of 1 or more")
    return seconds


def _unknown_keys(unknown: set[str], known: set[str]) -> str:
    return f"unknown key {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"


def read_config(path: Path) -> Mapping[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"--config {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config {path}: not valid TOML: {error}") from None


def build_plan(
    pairs: Sequence[str],
    *,
    config: Path | None,
    journal_root: Path | None,
    depth: int | None,
    ws_urls: Sequence[str] = (),
    rest_urls: Sequence[str] = (),
    silences: Sequence[str] = (),
) -> CollectPlan:
    """The plan from the command line and the optional TOML file."""
    file: Mapping[str, Any] = read_config(config) if config is not None else {}
    where = f"--config {config}"
    unknown = set(file) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: {_unknown_keys(unknown, _TOP_KEYS)}")
    wanted: dict[str, list[str]] = {}
    file_urls: dict[str, dict[str, str]] = {"ws_url": {}, "rest_url": {}}
    silence: dict[str, float] = {}
    venues = file.get("venues", {})
    if not isinstance(venues, dict):
        raise ConfigError(f"{where}: venues must be a table of [venues.NAME] tables")
    for key, table in venues.items():
        name = venue_name(key, f"{where} [venues.{key}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{where} [venues.{key}]: expected a table with symbols = [...]")
        bad = set(table) - _VENUE_KEYS
        if bad:
            raise ConfigError(f"{where} [venues.{key}]: {_unknown_keys(bad, _VENUE_KEYS)}")
        symbols = table.get("symbols", [])
        if not isinstance(symbols, list) or not symbols:
            raise ConfigError(f"{where} [venues.{key}]: symbols must be a non-empty list")
        for symbol in symbols:
            _add_symbol(wanted.setdefault(name, []), name, symbol, f"{where} [venues.{key}]")
        if "silence_s" in table:
            silence[name] = _seconds(table["silence_s"], f"{where} [venues.{key}] silence_s")
        for url_key, schemes in (("ws_url", ("wss", "ws")), ("rest_url", ("https", "http"))):
            if url_key in table:
                try:
                    file_urls[url_key][name] = check_url(str(table[url_key]), schemes)
                except ValueError as error:
                    raise ConfigError(f"{where} [venues.{key}] {url_key}: {error}") from None
    for name, symbols in parse_pairs(pairs).items():
        for symbol in symbols:
            if symbol not in wanted.setdefault(name, []):
                wanted[name].append(symbol)
    if not wanted:
        raise ConfigError("nothing to collect: give VENUE:SYMBOL arguments or --config FILE")
    for item in silences:
        venue, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(f"--silence-limit {item!r}: expected VENUE=SECONDS, e.g. upbit=120")
        name = venue_name(venue, f"--silence-limit {item!r}")
        silence[name] = _seconds(value, f"--silence-limit {item!r}")
    ws = file_urls["ws_url"] | _urls(ws_urls, "--ws-url", ("wss", "ws"))
    rest = file_urls["rest_url"] | _urls(rest_urls, "--rest-url", ("https", "http"))
    for option, names in (("ws_url", ws), ("rest_url", rest), ("silence limit", silence)):
        for name in names:
            if name not in wanted:
                raise ConfigError(f"a {option} is given for {name}, which has no symbol to collect")
    for name in rest:
        if VENUES[name].rest_url is None:
            raise ConfigError(
                f"a rest_url is given for {name}, which needs no REST snapshots "
                "(its websocket sends whole books or snapshots)"
            )
    warnings = tuple(
        f"{name}: the websocket is {ws[name]} but the snapshots come from "
        f"{VENUES[name].rest_url}: their update ids bridge only if both serve the same "
        f"book (give --rest-url {name}=URL for a gateway or a fake)"
        for name in ws
        if VENUES[name].rest_url is not None and name not in rest
    )
    root = journal_root if journal_root is not None else file.get("journal_root")
    if root is None:
        raise ConfigError("no journal root: give --journal-root DIR (or journal_root in --config)")
    if not isinstance(root, str | Path) or not str(root):
        raise ConfigError(f"{where}: journal_root {root!r}: expected a directory path string")
    levels = depth if depth is not None else file.get("depth", DEFAULT_DEPTH)
    if not isinstance(levels, int) or isinstance(levels, bool) or not 1 <= levels <= MAX_DEPTH:
        raise ConfigError(f"depth {levels!r}: give a whole number from 1 to {MAX_DEPTH}")
    plans = tuple(
        VenuePlan(
            replace(VENUES[name], silence_s=silence.get(name, VENUES[name].silence_s)),
            tuple(symbols),
            Path(root) / name,
            levels,
            ws.get(name, VENUES[name].ws_url),
            rest.get(name, VENUES[name].rest_url),
        )
        for name, symbols in wanted.items()
    )
    return CollectPlan(Path(root), levels, plans, warnings)
