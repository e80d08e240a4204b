"""The administrators' review report of a round: static HTML that opens offline, in Korean.

``aggregates`` computes every figure (pure functions over frames), ``charts`` draws inline SVG,
``pages`` turns figures into display rows (the "<5" rule lives there), ``inputs`` reads the
round's datasets and counts them partition by partition, ``render`` builds the pages (and writes
the 읍면동 pages per 시군구), ``stage`` writes ``rounds/YYYY-MM/report/`` atomically, ``command``
is the CLI.
"""
