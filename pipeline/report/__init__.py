"""The administrators' review report of a round: static HTML that opens offline, in Korean.

``aggregates`` computes every figure (pure functions over frames), ``charts`` draws inline SVG,
``pages`` turns figures into display rows (the "<5" rule lives there), ``stage`` reads the
round's datasets and writes ``rounds/YYYY-MM/report/`` atomically, ``command`` is the CLI.
"""
