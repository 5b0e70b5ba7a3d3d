"""NATS server URLs as they may be shown in a log line or an error: no credentials."""

from __future__ import annotations

import re
from typing import Final

_USERINFO: Final = re.compile(r"//[^/@\s]*@")


def shown(url: str) -> str:
    """``url`` fit for a log line or an error: a ``user:password@`` (or token) in it
    replaced by ``***@``."""
    return _USERINFO.sub("//***@", url)
