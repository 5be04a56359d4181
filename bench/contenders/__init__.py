"""The contenders of the throughput benchmark, each run as its own process.

Every contender reads the same topics from the beginning, counts events per (SKU, 60 s
event-time window) and writes ``{"events", "first_at", "done_at"}`` (wall-clock seconds
of its first and last counted event) to the result file once it has counted them all.
"""
