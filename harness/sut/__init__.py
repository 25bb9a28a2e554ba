"""The system under test that every backend shares, and the plumbing to drive it.

``caselogs`` (the logs of a case that did not pass, copied out of files, containers and pods
before cleanup), ``api`` (a small Prefect REST client: pools, deployments, runs, states), ``database`` (the
server's SQLite or PostgreSQL), ``proxy`` (the fault proxy between clients and the server: API
errors, latency, resets, refusals), ``net`` (ports on 127.0.0.1), ``procs`` (starting, marking,
finding and ending processes; ``STOPPING`` and ``wait_for``, used by every backend and the run).
"""
