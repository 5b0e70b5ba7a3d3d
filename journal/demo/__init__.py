"""``make demo``: a synthetic feed (``journal.demo.feed``) publishing through the
collector, the radar and the compactor as processes, then a summary and charts
(``_pipeline``). The top of the stack: it uses every layer, none uses it.
"""
