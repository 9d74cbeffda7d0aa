"""Centralised logs: every replica's and gateway's output in one SQLite store, searchable, mined.

    format.py        JSON log lines from a process, with its identity and the call's request id
    access.py        the gateway's access lines, and when to sample them
    records.py       a line of a log file -> LogRecord (never raises)
    tail.py          new lines of <logs_dir>/*.log since the last pass (offsets survive restarts)
    store.py         LogStore: SQLite + FTS5, queries, retention by size and age
    patterns.py      templates mined online (drain3), per deployment
    findings.py      new error templates, rate jumps after a rollout: pure decisions
    template_db.py   the miner's tables
    collect.py       LogCollector.step: one pass of all of the above, for the controller
    timespec.py      --since 10m / ISO times

Nothing is imported here: a gateway or replica that imports ``steadyserve.logs.format`` loads
neither SQLite nor drain3.
"""
