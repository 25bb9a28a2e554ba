"""The local backend: a Prefect server, workers and flow runs as processes of this machine.

``system`` (the server, the shared and per-case workers, deployments, and every fault kind's
local mechanism), ``signals`` (SIGKILL, SIGTERM with a grace, SIGSTOP/SIGCONT on a process
tree), ``cgroups`` (memory and cpu cgroups, v1 and v2: OOM kills and CPU starvation),
``taskworkers`` (``prefect task serve`` replicas for background tasks).  ``system`` also holds
what docker and kind reuse: a case's deployment and the faults on the server, database and API.
"""
