"""Watching journals run: snapshots of the shared-memory metrics (``_snapshot``),
``journal top`` (``_top``) and ``journal metrics`` in Prometheus text
(``_prometheus``). Reads the core's metrics files; writes nothing a writer reads.
"""
