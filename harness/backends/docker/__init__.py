"""The docker backend: the server in a testcontainers container, every flow run in its own.

``engine`` (a Docker engine started where none answers; the harness's image, built without a
registry from a Debian rootfs), ``system`` (server and flow-run containers on host networking,
labelled per session; container faults: kill, stop, OOM, ``docker update --cpus``).
"""
