"""Journals carried past one host through NATS JetStream (docs/REPLICATION.md).

``journal replicate`` publishes each journal's records, many a message, to a stream;
``journal mirror`` appends them to local journals, byte for byte, at the source's
positions. The local journal stays the source of truth; JetStream carries it. Needs
nats-py (``pip install 'orderbook-journal[replicate]'``), imported when used.
"""

from journal.replicate._scheme import (
    DEFAULT_STREAM,
    DEFAULT_SUBJECT_PREFIX,
    Run,
    message_id,
    parse_run,
    subject,
)

__all__ = [
    "DEFAULT_STREAM",
    "DEFAULT_SUBJECT_PREFIX",
    "Run",
    "message_id",
    "parse_run",
    "subject",
]
