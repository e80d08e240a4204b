"""The lineage room: the append-only, hash-chained ledger of lineage events
(:mod:`pipeline.lineage.ledger`) and the pure comparison of sealed records
(:mod:`pipeline.lineage.seals`). Stages write ledger entries; the audit reads and verifies them.
"""
