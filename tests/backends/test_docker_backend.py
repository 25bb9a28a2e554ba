"""The docker backend: the image recipe, and cleanup proven on a real engine.

The unit tests need nothing.  The integration tests start a real Prefect server container and
real flow-run containers; they skip with the engine's reason where no engine can be had.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.backends.docker import engine
from harness.run.session import clean_abandoned
from harness.sut import procs


def test_image_tag_is_a_hash_of_every_input():
    base = {"recipe": 1, "suite": "bookworm", "prefect": "3.8.8", "prefect-docker": "0.7.4",
            "prefect-kubernetes": "0.8.0", "constraints": ["fastapi<0.151"], "ca_certificates": {"a.crt": "00"}}
    tag = engine.image_tag(base)
    assert tag.startswith("chaos-harness/prefect:3.8.8-") and tag == engine.image_tag(dict(base))
    for key, other in (("prefect-docker", "0.7.3"), ("prefect-kubernetes", "0.7.13"),
                       ("ca_certificates", {"a.crt": "01"}), ("recipe", 2)):
        assert engine.image_tag({**base, key: other}) != tag, key


def test_the_image_pins_the_fastapi_of_this_environment():
    """The image's server must run on the FastAPI the tox env chose for this Prefect (3.6 needs
    fastapi<0.137, 3.8 fastapi<0.151): one fixed range would break one of them in the image."""
    from importlib import metadata

    inputs = engine.image_inputs()
    assert inputs["constraints"] == [f"fastapi=={metadata.version('fastapi')}"]
    assert engine.image_tag({**inputs, "constraints": ["fastapi==0.136.1"]}) != engine.image_tag(inputs)


def test_recipe_carries_the_ca_certificates_and_pins_prefect():
    script = engine._hook_script({"prefect": "3.8.8", "prefect-docker": "0.7.4", "prefect-kubernetes": "0.8.0",
                                  "constraints": ["fastapi<0.151"]})
    assert f"{engine.CA_DIR}/*.crt" in script and "update-ca-certificates" in script
    assert "'prefect==3.8.8' 'prefect-docker==0.7.4' 'prefect-kubernetes==0.8.0' 'fastapi<0.151'" in script
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in script


@pytest.mark.parametrize("env, ensure, image", [(engine.IMAGE_ENV, engine.ensure_image, "prefecthq/prefect:3-latest"),
                                                (engine.POSTGRES_IMAGE_ENV, engine.postgres_image, "postgres:16")])
def test_a_configured_image_is_never_pulled(monkeypatch, env, ensure, image):
    class Images:
        def get(self, tag):
            import docker
            raise docker.errors.ImageNotFound(tag)

        def pull(self, *a, **k):  # pragma: no cover - the assertion is that this never runs
            raise AssertionError("pulled")

    class Client:
        images = Images()

    monkeypatch.setenv(env, image)
    with pytest.raises(engine.Unavailable, match=f"{env}={image} is not present.*never pulls implicitly.*docker pull {image}"):
        ensure(Client())


def test_an_absent_image_of_a_row_is_its_error_before_any_worker_starts(monkeypatch, tmp_path):
    import docker

    from harness.backends.docker import system as docker_system
    from harness.model.scenario import Scenario

    class Images:
        def get(self, tag):
            raise docker.errors.ImageNotFound(tag)

        def pull(self, *a, **k):  # pragma: no cover - the assertion is that this never runs
            raise AssertionError("pulled")

    monkeypatch.setattr(docker_system, "scenario_deployment", lambda *a, **k: pytest.fail("a worker was started"))
    system = docker_system.DockerSystem.__new__(docker_system.DockerSystem)
    system.client, system.image = type("Client", (), {"images": Images()})(), "chaos-harness/prefect:x"
    (tmp_path / "etl.py").write_text("def etl(): pass\n")
    scenario = Scenario.model_validate({
        "id": "mine", "title": "mine", "backends": ["docker"], "workload": {"flow": "etl.py:etl"},
        "config": {"job": {"image": "acme/etl:1.0"}}, "expect": {"final": "COMPLETED", "settle_within_seconds": 60}},
        context={"base": tmp_path})
    with pytest.raises(ValueError, match=r"scenario mine: @config\.job\.image: acme/etl:1\.0 is not present .* never "
                                         r"pulls: build it, or run 'docker pull acme/etl:1\.0' first"):
        system.deploy(scenario, "mine-1")


# -- on a real engine ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    try:
        c = engine.ensure_engine()
        engine.ensure_image(c)
    except engine.Unavailable as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    yield c
    c.close()


def labelled(client, key: str, value: str) -> dict[str, list[str]]:
    f = {"label": f"{key}={value}"}
    return {"containers": [c.name for c in client.containers.list(all=True, filters=f)],
            "volumes": [v.name for v in client.volumes.list(filters=f)]}


MATRIX = """
- id: quick-one
  title: finishes before the interrupt (Completed, against FAILED on purpose); its line and logs survive it
  backends: [docker]
  workload: {flow: pipeline, parameters: {steps: 1, sleep: 0}}
  expect: {final: FAILED, settle_within_seconds: 120}
- id: paused-container
  title: a flow-run container paused when the harness is interrupted
  backends: [docker]
  workload: {flow: pipeline, parameters: {steps: 2, sleep: 60}}
  faults:
    - {kind: freeze, when: {task: step-1, state: running}}
  expect: {final: CRASHED, settle_within_seconds: 300}
"""


@pytest.mark.integration
def test_ctrl_c_mid_run_removes_every_container_and_volume_and_spares_a_bystander(client, tmp_path, repo_root, wait_until):
    from harness.backends.docker.objects import OWNER_LABEL, SESSION_LABEL

    image = engine.ensure_image(client)
    bystander = client.containers.run(image, ["sleep", "600"], detach=True, network_mode="host",
                                      labels={"chaos-test": "bystander"})  # not the harness's
    (tmp_path / "m.yaml").write_text(textwrap.dedent(MATRIX))
    journal = tmp_path / "journal.jsonl"
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--backend", "docker", "--matrix", str(tmp_path / "m.yaml"),
         "--journal", str(journal), "--concurrency", "1", "-p", "no:cacheprovider"],  # the first ends, then the second
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=procs.default_signals)  # as from a terminal: SIGINT is ignored in a background job's children
    try:
        def paused():
            found = client.containers.list(filters={"label": f"{OWNER_LABEL}={harness.pid}", "status": "paused"})
            return found or None

        flow_container = wait_until(paused, 300, "a paused flow-run container of the second scenario")[0]
        session = flow_container.labels[SESSION_LABEL]
        before = labelled(client, SESSION_LABEL, session)
        assert len(before["containers"]) >= 2 and before["volumes"], before  # server + flow run, db volume
        harness.send_signal(signal.SIGINT)
        output, _ = harness.communicate(timeout=180)
        assert labelled(client, SESSION_LABEL, session) == {"containers": [], "volumes": []}, output
        assert procs.find(session) == []
        bystander.reload()
        assert bystander.status == "running"
        lines = [json.loads(l) for l in journal.read_text().splitlines()]
        assert [l["scenario"] for l in lines] == ["quick-one"], output
        assert lines[0]["verdict"]["outcome"] == "fail" and lines[0]["verdict"]["figures"]["final"] == "COMPLETED"
        # the failed case kept its logs while its containers still existed: the server container's,
        # the shared worker's (its row spares the worker; the flow run's output streams there) and
        # the flow-run container's own
        logs, kept = lines[0]["logs"], tmp_path / lines[0]["logs"]["dir"]
        containers = [f for f in logs["files"] if f.startswith("container-")]
        assert sorted(set(logs["files"]) - set(containers)) == ["server.log", "shared-worker.log"], logs
        assert len(containers) == 1 and logs["problems"] == [], logs
        run_id = lines[0]["history"]["flow_runs"][0]["id"]
        assert run_id in (kept / "shared-worker.log").read_text()
        assert "Finished in state Completed" in (kept / containers[0]).read_text()
    finally:
        if harness.poll() is None:
            harness.kill()
        bystander.remove(force=True)


@pytest.mark.integration
def test_containers_of_a_sigkilled_harness_are_removed_by_the_next_session(client):
    from harness.backends.docker.objects import SESSION_LABEL

    script = ("import time; from harness.run.session import ChaosSession; s = ChaosSession(); s.system('docker'); "
              "print(s.id, flush=True); time.sleep(600)")
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        session = harness.stdout.readline().strip()
        assert session, "the harness did not start its docker system"
        with procs.machine_lock("reap"):  # no session started meanwhile (another xdist worker) reaps first
            os.kill(harness.pid, signal.SIGKILL)
            harness.wait(10)
            left = labelled(client, SESSION_LABEL, session)
            assert left["containers"] and left["volumes"]  # the server container outlived its harness
            removed = clean_abandoned()
    finally:
        if harness.poll() is None:
            harness.kill()
    assert labelled(client, SESSION_LABEL, session) == {"containers": [], "volumes": []}
    assert any(r.startswith("container ") for r in removed)


@pytest.mark.integration
@pytest.mark.parametrize("other", ["kind", "docker-postgres"])
def test_a_system_removes_only_its_own_objects_of_a_shared_session(client, other):
    """docker and kind, or two docker systems (SQLite and PostgreSQL), in one session: closing
    one must not remove the other's server."""
    from harness.backends.docker.objects import remove_backend_objects, session_labels

    session = f"t{os.getpid()}"
    mine = client.volumes.create(name=f"chaos-{session}-docker-x", labels=session_labels(session, "docker"))
    theirs = client.volumes.create(name=f"chaos-{session}-{other}-x", labels=session_labels(session, other))
    try:
        remove_backend_objects(client, None, session, "docker")
        names = {v.name for v in client.volumes.list(filters={"label": f"chaos-harness.session={session}"})}
        assert names == {theirs.name}
    finally:
        for v in (mine, theirs):
            try:
                v.remove(force=True)
            except Exception:
                pass


@pytest.mark.integration
def test_two_removers_of_the_same_objects_both_succeed(client):
    """Two sessions starting at once both reap a SIGKILLed harness's leftovers.  Docker answers
    the second removal of a container with 409 ("removal ... already in progress"): that failed a
    session's start in CI.  Both removers must succeed and the objects be gone."""
    import threading
    import uuid

    from harness.backends.docker.objects import remove_labelled

    labels = {"chaos-harness.test-race": uuid.uuid4().hex[:8]}  # not an owner label: no session reaps it
    container = client.containers.run(engine.ensure_image(client), ["sleep", "600"], detach=True,
                                      labels=labels, network_mode="host")
    volume = client.volumes.create(name=f"chaos-race-{labels['chaos-harness.test-race']}", labels=labels)
    reports, errors = [], []

    def remover():
        try:
            reports.append(remove_labelled(client, labels))
        except Exception as exc:  # noqa: BLE001 - recorded, asserted below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=remover) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert labelled(client, "chaos-harness.test-race", labels["chaos-harness.test-race"]) == \
            {"containers": [], "volumes": []}
        named = [r for report in reports for r in report]
        assert any(r.startswith(f"container {container.name}") for r in named)
        assert f"volume {volume.name}" in named
    finally:
        remove_labelled(client, labels)


@pytest.mark.integration
def test_a_server_of_its_own_runs_with_the_cases_server_settings(client, tmp_path):
    """What ``private_system`` starts on docker for a row with ``server.env``: a server container
    with those settings, removed with the system."""
    from harness.backends import start

    session = f"s{os.getpid()}"
    procs.STOPPING.clear()  # no session here: another test's session that closed in this process set it
    own = start("docker", tmp_path, session, {"server_env": {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "3"}})
    try:
        settings = own.api._call("GET", "/admin/settings")
        assert settings["server"]["database"]["sqlalchemy"]["pool_size"] == 3
        assert labelled(client, "chaos-harness.session", session)["containers"]
    finally:
        own.close()
    assert labelled(client, "chaos-harness.session", session) == {"containers": [], "volumes": []}


@pytest.mark.integration
def test_cpu_starve_of_a_container_throttles_it_live_and_lifts(client):
    """``docker update`` of a running container's CFS quota: Docker's own count of throttled
    periods says it acted; healing lifts it (-1) and closing leaves no quota behind."""
    import time
    import uuid

    from harness.backends.docker.objects import remove_labelled
    from harness.backends.docker.system import ContainerCpuStarve

    labels = {"chaos-harness.test-starve": uuid.uuid4().hex[:8]}  # not an owner label: no session reaps it
    busy = client.containers.run(engine.ensure_image(client), ["python3", "-c", "while True: pass"], detach=True,
                                 labels=labels, network_mode="host")
    try:
        starve = ContainerCpuStarve(lambda: [busy], 0.1)
        injected = starve.inject()
        assert injected["quota_us"] == 10_000 and injected["applied"] == {busy.name: [10_000, 100_000]}
        time.sleep(1.5)
        healed = starve.heal()
        assert healed["lifted"] == [busy.name] and healed["throttling"][busy.name]["throttled_periods"] > 0
        busy.reload()
        assert busy.attrs["HostConfig"]["CpuQuota"] == -1
        assert starve.close() == {}  # lifted already
    finally:
        remove_labelled(client, labels)


USER_FLOW = '''
from pathlib import Path

from prefect import flow, task


@task
def greet(out: str) -> str:
    import greeting  # only the user's image has it

    Path(out).write_text(greeting.WHO)
    return greeting.WHO


@flow
def hello(out: str) -> str:
    return greet(out)
'''


@pytest.mark.integration
def test_a_flow_of_your_own_runs_in_your_own_image(client, chaos_session, tmp_path):
    """``job.image``: the flow runs in the user's image (built here from the harness's, with a
    module only it has on its own PYTHONPATH); the rerun keeps it; an absent image is an error
    naming the field before any worker starts."""
    from harness.chaos import Chaos

    context = tmp_path / "image"
    context.mkdir()
    (context / "greeting.py").write_text("WHO = 'the user image'\n")
    (context / "Dockerfile").write_text(f"FROM {engine.ensure_image(client)}\n"
                                        "COPY greeting.py /opt/etl-lib/greeting.py\nENV PYTHONPATH=/opt/etl-lib\n")
    tag = f"chaos-harness-test/user-image:{os.getpid()}"
    client.images.build(path=str(context), tag=tag, pull=False, rm=True, network_mode="host")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "hello.py").write_text(USER_FLOW)
    entrypoint = f"{tmp_path / 'project' / 'hello.py'}:hello"
    try:
        with Chaos("docker", session=chaos_session) as chaos:
            result = chaos.run(entrypoint, parameters={"out": "{case}/who.txt"}, job={"image": tag})
            assert result.final == "COMPLETED", result.message
            assert result.executions["greet"] == 1  # the tracer ran inside the user's image too
            assert Path(result.parameters["out"]).read_text() == "the user image"
            again = chaos.rerun(result)
            assert again.final == "COMPLETED", again.message
            with pytest.raises(ValueError, match=r"@config\.job\.image: chaos-harness-test/absent:1 is not present"):
                chaos.run(entrypoint, parameters={"out": "{case}/who.txt"}, job={"image": "chaos-harness-test/absent:1"})
    finally:
        client.images.remove(tag, force=True)
