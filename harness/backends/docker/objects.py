"""A docker session's objects: the labels every container and volume it makes carries, and their
removal, at the end of a session and after a SIGKILLed one (only what carries its labels)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable

from harness.backends.docker import engine
from harness.sut import procs

if TYPE_CHECKING:
    from harness.backends.docker.server import ServerContainer


SESSION_LABEL = "chaos-harness.session"


OWNER_LABEL = "chaos-harness.owner"


INSTANCE_LABEL = "chaos-harness.instance"


# the system that made an object: docker and kind both make containers in one session, and a
# session may hold several docker systems (docker, docker-postgres, a case's private one)
BACKEND_LABEL = "chaos-harness.backend"


FLOW_RUN_LABEL = "io.prefect.flow-run-id"  # prefect-docker's label (prefect.io/flow-run-id, reversed)


def session_labels(session: str, backend: str) -> dict[str, str]:
    return {SESSION_LABEL: session, OWNER_LABEL: str(os.getpid()), BACKEND_LABEL: backend}


REMOVAL_WAIT = 60.0  # another remover's removal of a container, in progress


def _remove(obj, kind: str, removal: Callable[[], Any]) -> str | None:
    """Remove one Docker object; what to report, or None if it was already gone.

    Another harness may be removing the same object at the same moment: two sessions starting
    together both reap a SIGKILLed harness's leftovers, and Docker answers the second with 409
    ("removal ... already in progress", or a volume still in use by a container being removed).
    That is not an error: wait (bounded) until the object is gone and report it."""
    import docker

    try:
        removal()
        return f"{kind} {obj.name}"
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as e:
        if e.status_code != 409:
            raise
        conflict = e
    deadline = time.monotonic() + REMOVAL_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.25)
        try:
            obj.reload()
        except docker.errors.NotFound:
            return f"{kind} {obj.name} (removed concurrently)"
        if kind == "volume":  # in use by a container another remover is removing: try again
            try:
                removal()
                return f"{kind} {obj.name}"
            except docker.errors.NotFound:
                return f"{kind} {obj.name} (removed concurrently)"
            except docker.errors.APIError as e:
                if e.status_code != 409:
                    raise
    raise RuntimeError(f"{kind} {obj.name} still exists {REMOVAL_WAIT:.0f} s after Docker "
                       f"answered its removal with: {conflict}")


def remove_labelled(client, selector: dict[str, str]) -> list[str]:
    """Remove every container, volume and network carrying all of ``selector``'s labels."""
    filters = {"label": [f"{k}={v}" for k, v in selector.items()]}
    removed = []
    for c in client.containers.list(all=True, filters=filters):
        removed.append(_remove(c, "container", lambda c=c: c.remove(force=True, v=True)))
    for v in client.volumes.list(filters=filters):
        removed.append(_remove(v, "volume", lambda v=v: v.remove(force=True)))
    for n in client.networks.list(filters=filters):
        removed.append(_remove(n, "network", n.remove))
    return [r for r in removed if r]


def reap_abandoned() -> list[str]:
    """Containers, volumes and networks of harness sessions whose owner process is dead.

    Never starts an engine: with none running there is nothing of ours to remove."""
    try:
        client = engine.ensure_engine(install=False)
    except engine.Unavailable:
        return []
    removed: list[str] = []
    try:
        owners = set()
        for kind in (client.containers.list(all=True, filters={"label": OWNER_LABEL}),
                     client.volumes.list(filters={"label": OWNER_LABEL}),
                     client.networks.list(filters={"label": OWNER_LABEL})):
            for obj in kind:
                owners.add(((obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {})).get(OWNER_LABEL))
        for owner in owners:
            if owner and owner.isdigit() and not procs.alive(int(owner)):
                removed += remove_labelled(client, {OWNER_LABEL: owner})
    finally:
        client.close()
    return removed


def remove_backend_objects(client, server: "ServerContainer | None", session: str, backend: str) -> None:
    """At a system's close: its server container, then every Docker object of this session made
    by this backend (not another backend's of the same session)."""
    try:
        if server is not None:
            server.remove()
            server.api.close()
    finally:
        remove_labelled(client, {SESSION_LABEL: session, BACKEND_LABEL: backend})
