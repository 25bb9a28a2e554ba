"""The Prefect REST API as the harness uses it: deploy, start runs, observe states.

Plain HTTP with short timeouts rather than Prefect's client: the harness must see a down server
as down (the client would retry and hide it), and the same calls serve every Prefect 3 version
and every backend.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import httpx

from harness.model.history import State


class APIError(RuntimeError):
    pass


# SQLite answers "database is locked" as 503; a restarting server refuses connections.
TRANSIENT = frozenset({429, 502, 503, 504})
# Creating a run retries a 500 too: a server whose database pool ran out (storm-db-pool-exhausted)
# answers 500 to a request it found no connection for, and the run's idempotency key makes a
# retry safe should the server have made the run after all.
CREATE_RUN_TRANSIENT = TRANSIENT | {500}
SETUP = 30.0  # seconds a setup call (deploy, create a run) retries transient failures


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def state_of(raw: dict[str, Any]) -> State:
    return State(type=raw["type"], name=raw.get("name") or raw["type"].title(),
                 timestamp=_epoch(raw["timestamp"]), message=raw.get("message"))


# An idle connection is dropped by the client well before the server drops it: Prefect's server
# (uvicorn) closes one idle for PREFECT_SERVER_API_KEEPALIVE_TIMEOUT (5 s), httpx keeps one 5 s
# too, and a request sent on a connection the server is closing at that moment fails with
# "Server disconnected without sending a response" (seen in CI on a direct call after a case).
KEEPALIVE_EXPIRY = 1.0


class PrefectAPI:
    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout,
                                 limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY))

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, retry_for: float = 0, timeout: float | None = None,
              transient_codes: frozenset[int] = TRANSIENT, **kw: Any) -> Any:
        """One request; ``retry_for`` > 0 retries transient failures (a connection's, or an answer
        in ``transient_codes``) that long (setup calls only: an observation must see a down server
        as down); ``timeout`` replaces the client's own."""
        if timeout is not None:
            kw["timeout"] = timeout
        deadline, pause = time.monotonic() + retry_for, 0.2
        while True:
            try:
                resp = self.http.request(method, path, **kw)
                if resp.status_code < 400:
                    return resp.json() if resp.content else None
                error = APIError(f"{method} {self.url}{path}: HTTP {resp.status_code}: {resp.text[:500]}")
                transient = resp.status_code in transient_codes
            except httpx.HTTPError as exc:
                error = APIError(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}")
                transient = isinstance(exc, httpx.TransportError)
            if not transient or time.monotonic() + pause > deadline:
                raise error
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def healthy(self) -> bool:
        try:
            return self.http.get("/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # deploying -------------------------------------------------------------------------------
    def work_pool(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"/work_pools/{name}")
        except APIError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def workers(self, pool: str) -> list[dict[str, Any]]:
        return self._call("POST", f"/work_pools/{pool}/workers/filter", json={})

    def create_work_pool(self, name: str, pool_type: str, base_job_template: dict[str, Any]) -> None:
        """A pool with its own base job template (a worker would otherwise create it with the default)."""
        self._call("POST", "/work_pools/", SETUP, json={"name": name, "type": pool_type,
                                                        "base_job_template": base_job_template})

    def delete_work_pool(self, name: str) -> None:
        self._call("DELETE", f"/work_pools/{name}")

    def delete_work_queue(self, pool: str, queue: str) -> None:
        self._call("DELETE", f"/work_pools/{pool}/queues/{queue}")

    def create_deployment(self, *, flow_name: str, name: str, pool: str, entrypoint: str, directory: str,
                          parameters: dict[str, Any], job_variables: dict[str, Any], tags: list[str],
                          queue: str | None = None) -> str:
        """A deployment in ``pool`` (in its work queue ``queue``, which the server makes if need be)."""
        flow = self._call("POST", "/flows/", SETUP, json={"name": flow_name})
        body = {
            "name": name,
            "flow_id": flow["id"],
            "work_pool_name": pool,
            "entrypoint": entrypoint,
            "path": directory,
            "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": directory}}],
            "parameters": parameters,
            "job_variables": job_variables,
            "enforce_parameter_schema": False,
            "tags": tags,
        }
        if queue is not None:
            body["work_queue_name"] = queue
        return self._call("POST", "/deployments/", SETUP, json=body)["id"]

    def delete_deployment(self, deployment_id: str) -> None:
        self._call("DELETE", f"/deployments/{deployment_id}")

    def create_flow_run(self, deployment_id: str, parameters: dict[str, Any], tags: list[str],
                        retry_for: float = SETUP, timeout: float | None = None) -> str:
        """A run of the deployment.  The idempotency key makes retrying a timed-out request (or a
        500) safe: the server returns the run it already made instead of making a second one."""
        body = {"parameters": parameters, "tags": tags, "idempotency_key": uuid.uuid4().hex}
        return self._call("POST", f"/deployments/{deployment_id}/create_flow_run", retry_for, timeout,
                          CREATE_RUN_TRANSIENT, json=body)["id"]

    def create_automation(self, body: dict[str, Any]) -> str:
        return self._call("POST", "/automations/", SETUP, json=body)["id"]

    def delete_automation(self, automation_id: str) -> None:
        self._call("DELETE", f"/automations/{automation_id}")

    # acting as a user ------------------------------------------------------------------------
    def set_flow_run_state(self, flow_run_id: str, state_type: str, message: str) -> dict[str, Any]:
        """Propose a state as a user's client does (``prefect flow-run cancel`` proposes CANCELLING,
        not forced): the server's orchestration answers ACCEPT, REJECT, ABORT or WAIT."""
        body = {"state": {"type": state_type, "message": message}, "force": False}
        return self._call("POST", f"/flow_runs/{flow_run_id}/set_state", json=body)

    # observing -------------------------------------------------------------------------------
    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/flow_runs/{flow_run_id}")

    def subflow_runs(self, parent_ids: list[str]) -> list[dict[str, Any]]:
        body = {"flow_runs": {"parent_flow_run_id": {"any_": parent_ids}}, "limit": 200}
        return self._call("POST", "/flow_runs/filter", json=body)

    def flow_runs(self, flow_run_ids: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
        return self._paged("/flow_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}}, timeout=timeout)

    def task_runs(self, flow_run_ids: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
        return self._paged("/task_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}}, timeout=timeout)

    def _paged(self, path: str, body: dict[str, Any], page: int = 200,
               timeout: float | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            got = self._call("POST", path, timeout=timeout, json={**body, "limit": page, "offset": len(rows)})
            rows += got
            if len(got) < page:
                return rows

    def flow_run_states(self, flow_run_id: str) -> list[State]:
        raw = self._call("GET", "/flow_run_states/", params={"flow_run_id": flow_run_id})
        return sorted((state_of(s) for s in raw), key=lambda s: s.timestamp)

    def task_run_states(self, task_run_id: str) -> list[State]:
        raw = self._call("GET", "/task_run_states/", params={"task_run_id": task_run_id})
        return sorted((state_of(s) for s in raw), key=lambda s: s.timestamp)

    def flow_names(self, flow_ids: set[str]) -> dict[str, str]:
        if not flow_ids:
            return {}
        rows = self._call("POST", "/flows/filter", json={"flows": {"id": {"any_": sorted(flow_ids)}}})
        return {r["id"]: r["name"] for r in rows}
