"""Watching journals run: snapshots of the shared-memory metrics (``_snapshot``),
``journal top`` (``_top``) and ``journal metrics`` in Prometheus text
(``_prometheus``). Reads the core's metrics files (the writer's, the readers', and
the feed of the collector writing the journal); writes nothing a writer reads.
"""
