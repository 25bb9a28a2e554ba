"""A Docker engine and the harness's Prefect image, made without a registry.

``ensure_engine`` answers with a connected ``docker`` client.  When no engine answers it installs
Debian's ``docker.io`` (as root, where apt-get exists) and starts ``dockerd`` in the background,
then waits for it; an engine that already runs is left alone.  Where no engine can be had it
raises :class:`Unavailable` with the reason, and docker scenarios skip with that reason.

``ensure_image`` answers with the tag of a Prefect image.  The harness builds its own from a
Debian rootfs (``mmdebstrap`` piped into ``docker import``) with the same Prefect version as the
harness, plus prefect-docker and prefect-kubernetes, and the machine's CA certificates so pip works behind a TLS proxy.
The tag is a hash of the inputs; a present image is reused.  ``CHAOS_DOCKER_IMAGE`` names a
configured image (the official one, say) instead; it must already be present: nothing is ever
pulled implicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from harness.backends import Unavailable  # noqa: E402  (every backend's "cannot start here"; re-exported)
from harness.sut import procs

# testcontainers' reaper is an image that cannot be pulled without a registry; the harness removes
# its containers itself, by label (set before testcontainers reads its configuration)
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

IMAGE_ENV = "CHAOS_DOCKER_IMAGE"
POSTGRES_IMAGE_ENV = "CHAOS_POSTGRES_IMAGE"  # a PostgreSQL image present locally, e.g. postgres:16
IMAGE_REPO = "chaos-harness/prefect"
RECIPE = 1  # bump when the build recipe below changes: it is part of the tag's hash
SUITE = "bookworm"
CA_DIR = Path("/usr/local/share/ca-certificates")
DOCKERD_LOG = Path(tempfile.gettempdir()) / "chaos-harness-dockerd.log"
PACKAGES = ("docker.io", "mmdebstrap")


def _client():
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - an install without the docker extra
        raise Unavailable("the 'docker' Python package is not installed (pip install 'prefect-chaos-harness[docker]')") from exc
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as exc:
        raise Unavailable(f"no Docker engine answers ({type(exc).__name__}: {exc})") from exc


def _apt_install(missing: list[str]) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(f"{', '.join(missing)} missing and cannot be installed here "
                          "(installing needs root and apt-get); install them, or start a Docker engine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")


def _tools_missing() -> list[str]:
    wanted = {"docker.io": "dockerd", "mmdebstrap": "mmdebstrap"}
    return [pkg for pkg, binary in wanted.items() if not shutil.which(binary)]


def ensure_engine(install: bool = True, timeout: float = 90):
    """A connected docker client; installs and starts an engine where none answers."""
    try:
        return _client()
    except Unavailable as first:
        if not install or os.environ.get("CHAOS_DOCKER_INSTALL", "1") == "0":
            raise
        why_not = first
    with procs.machine_lock("engine"):
        try:
            return _client()  # another process started it while we waited for the lock
        except Unavailable:
            pass
        missing = _tools_missing()
        if missing:
            _apt_install(missing)
        if not shutil.which("dockerd"):
            raise Unavailable(f"dockerd not found after installing docker.io ({why_not})")
        # Started in its own session, with a clean environment (no harness session marker: the
        # engine is machine infrastructure, not a process of any one harness session).
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
        with open(DOCKERD_LOG, "ab") as log:
            proc = subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return _client()
            except Unavailable as exc:
                if proc.poll() is not None:
                    raise Unavailable(f"dockerd exited ({proc.returncode}); see {DOCKERD_LOG}: {_tail(DOCKERD_LOG)}") from exc
                if time.monotonic() > deadline:
                    raise Unavailable(f"dockerd did not answer within {timeout:g}s; see {DOCKERD_LOG}") from exc
            time.sleep(0.5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def image_inputs() -> dict[str, Any]:
    """Everything the image is made of; its hash is the image's tag."""
    certs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(CA_DIR.glob("*.crt"))}
    fastapi = _version("fastapi")
    return {
        "recipe": RECIPE,
        "suite": SUITE,
        "prefect": _version("prefect"),
        "prefect-docker": _version("prefect-docker"),
        "prefect-kubernetes": _version("prefect-kubernetes"),  # the kind backend's worker runs in it
        # the image's Prefect server runs on the FastAPI this one does (tox pins it per Prefect version)
        "constraints": [f"fastapi=={fastapi}" if fastapi else "fastapi<0.151"],
        "ca_certificates": certs,
    }


def image_tag(inputs: dict[str, Any] | None = None) -> str:
    inputs = inputs or image_inputs()
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    return f"{IMAGE_REPO}:{inputs['prefect']}-{digest}"


def _requirements(inputs: dict[str, Any]) -> list[str]:
    reqs = [f"prefect=={inputs['prefect']}"]
    for dist in ("prefect-docker", "prefect-kubernetes"):
        reqs.append(f"{dist}=={inputs[dist]}" if inputs.get(dist) else dist)
    return reqs + list(inputs["constraints"])


def _hook_script(inputs: dict[str, Any]) -> str:
    """The mmdebstrap customize hook: CA certificates, a venv, Prefect from PyPI."""
    reqs = " ".join(f"'{r}'" for r in _requirements(inputs))
    return "\n".join([
        "#!/bin/sh",
        "set -eu",
        'root="$1"',
        f'for c in {CA_DIR}/*.crt; do [ -e "$c" ] && cp "$c" "$root/usr/local/share/ca-certificates/"; done',
        'chroot "$root" update-ca-certificates >/dev/null',
        'chroot "$root" python3 -m venv /opt/prefect',
        'chroot "$root" env PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 '
        f'/opt/prefect/bin/pip install -q --no-cache-dir {reqs}',
        'rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*',
        "",
    ])


@contextmanager
def scratch(prefix: str = "chaos-harness-image-") -> Iterator[Path]:
    """A temporary directory claimed by this process (as a session's workdir), so the next
    session removes it should this process be SIGKILLed before it does (mid-build)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        procs.claim(Path(tmp))
        yield Path(tmp)


def _build(client, tag: str, include: str, hook: str, changes: list[str], labels: str, log,
           essential_hook: str | None = None) -> str:
    """A Debian rootfs (``mmdebstrap``, ``include``d packages, a customize ``hook``, an
    ``essential_hook`` before the packages are installed) piped into ``docker import`` as
    ``tag``; reused when present."""
    with procs.machine_lock("image"):
        if _present(client, tag):
            return tag
        if not shutil.which("mmdebstrap"):
            _apt_install(["mmdebstrap"])
        with scratch() as tmp:
            hook_path = tmp / "hook.sh"
            hook_path.write_text(hook)
            hook_path.chmod(0o755)
            hooks = [f"--customize-hook={hook_path} \"$1\""]
            if essential_hook is not None:
                essential_path = tmp / "essential.sh"
                essential_path.write_text(essential_hook)
                essential_path.chmod(0o755)
                hooks.insert(0, f"--essential-hook={essential_path} \"$1\"")
            build_log = tmp / "mmdebstrap.log"
            print(f"building {tag} from a Debian {SUITE} rootfs (about a minute)", file=log, flush=True)
            started = time.monotonic()
            with open(build_log, "wb") as errf:
                strap = subprocess.Popen(
                    ["mmdebstrap", "--variant=apt", f"--include={include}", *hooks, SUITE, "-"],
                    stdout=subprocess.PIPE, stderr=errf,
                    start_new_session=True)  # it HUPs its process group when it fails: not the harness
                argv = ["docker", "import"]
                for change in [*changes, f"LABEL chaos-harness.image-inputs={json.dumps(labels)}"]:
                    argv += ["-c", change]
                imported = subprocess.run([*argv, "-", tag], stdin=strap.stdout, capture_output=True, text=True)
                strap.stdout.close()
                strap_rc = strap.wait()
            if strap_rc != 0 or imported.returncode != 0:
                raise Unavailable(f"building {tag} failed: mmdebstrap exit {strap_rc}, docker import exit "
                                  f"{imported.returncode} {imported.stderr.strip()[-400:]}\n{_tail(build_log)}")
            print(f"built {tag} in {time.monotonic() - started:.0f}s", file=log, flush=True)
    return tag


def build_image(client, inputs: dict[str, Any] | None = None, log=sys.stderr) -> str:
    """Build the harness image from a Debian rootfs; return its tag (reused when present)."""
    inputs = inputs or image_inputs()
    if not inputs["prefect"]:
        raise Unavailable("Prefect is not installed: the image carries the harness's own Prefect version")
    return _build(client, image_tag(inputs), "python3,python3-venv,ca-certificates,procps", _hook_script(inputs),
                  ["ENV PATH=/opt/prefect/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "ENV PYTHONUNBUFFERED=1"], json.dumps(inputs, sort_keys=True), log)


# The part of the official postgres image's entrypoint that testcontainers' PostgresContainer
# relies on: on the first start, a cluster whose superuser is $POSTGRES_USER (password
# $POSTGRES_PASSWORD) with a database $POSTGRES_DB; then the command, as the postgres user.  A
# container started again keeps its data and skips the first part.  PostgreSQL is the container's
# PID 1, so a signal to the container is a signal to the server (SIGINT: a fast shutdown).
POSTGRES_ENTRYPOINT = r"""#!/bin/sh
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
export PATH="$bin:$PATH" PGDATA="${PGDATA:-/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    install -d -o postgres -g postgres -m 700 "$PGDATA"
    pw=$(mktemp)
    printf '%s' "${POSTGRES_PASSWORD:-postgres}" > "$pw"
    chown postgres "$pw"
    runuser -u postgres -- initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth-host=scram-sha-256 \
        --auth-local=trust --encoding=UTF8 >/dev/null
    rm -f "$pw"
    runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses= -c unix_socket_directories=/tmp" -w start >/dev/null
    if [ "${POSTGRES_DB:-$user}" != postgres ]; then
        runuser -u postgres -- psql -h /tmp -U "$user" -d postgres -v ON_ERROR_STOP=1 \
            -c "CREATE DATABASE \"${POSTGRES_DB:-$user}\"" >/dev/null
    fi
    runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
"""
POSTGRES_REPO = "chaos-harness/postgres"


def postgres_image(client, log=sys.stderr) -> str:
    """A PostgreSQL image for testcontainers, built like the Prefect image (Debian's PostgreSQL);
    ``CHAOS_POSTGRES_IMAGE`` names a present one instead (the official image, say)."""
    configured = _configured(client, POSTGRES_IMAGE_ENV)
    if configured:
        return configured
    # no service starts inside the build: the package would start its default cluster in the
    # chroot (and its scripts signal what they started)
    no_daemons = "#!/bin/sh\nprintf '#!/bin/sh\\nexit 101\\n' > \"$1/usr/sbin/policy-rc.d\"\nchmod 755 \"$1/usr/sbin/policy-rc.d\"\n"
    hook = "\n".join([
        "#!/bin/sh", "set -eu", 'root="$1"',
        # no default cluster: the entrypoint makes the container's own
        'chroot "$root" sh -c \'pg_lsclusters -h | while read v c rest; do pg_dropcluster "$v" "$c"; done\'',
        'rm -f "$root/usr/sbin/policy-rc.d"',
        f"cat > \"$root/usr/local/bin/docker-entrypoint.sh\" <<'ENTRYPOINT'\n{POSTGRES_ENTRYPOINT}ENTRYPOINT",
        'chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"',
        'rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*',
        "",
    ])
    inputs = {"suite": SUITE, "recipe": hashlib.sha256((hook + no_daemons).encode()).hexdigest()}
    tag = f"{POSTGRES_REPO}:{SUITE}-{hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]}"
    return _build(client, tag, "postgresql,ca-certificates", hook,
                  ['ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]', 'CMD ["postgres"]'],
                  json.dumps(inputs, sort_keys=True), log, essential_hook=no_daemons)


def _present(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_image(client, log=sys.stderr) -> str:
    """The image flow runs and the server run in: a configured one, else the harness's own."""
    return _configured(client, IMAGE_ENV) or build_image(client, log=log)


def flow_image(client, scenario, default: str) -> str:
    """The image a scenario's flow runs start in: its ``job.image`` (which must be present, as a
    configured image must: nothing is pulled) or ``default``, the harness's own."""
    image = scenario.config.job.image
    if image is None:
        return default
    if not _present(client, image):
        raise ValueError(f"scenario {scenario.id}: @config.job.image: {image} is not present on this machine's "
                          f"Docker and the harness never pulls: build it, or run 'docker pull {image}' first")
    return image


def flow_pythonpath(client, image: str, first: list[str]) -> str:
    """A flow run's ``PYTHONPATH`` in ``image``: ``first`` (its code, the harness), then the
    image's own ``PYTHONPATH`` (its ``ENV``), which the job's variable would otherwise replace."""
    own = [value for key, _, value in (pair.partition("=") for pair in
                                       (client.images.get(image).attrs.get("Config") or {}).get("Env") or [])
           if key == "PYTHONPATH" and value]
    return os.pathsep.join([*first, *own])


def _configured(client, env: str) -> str | None:
    """The image ``env`` names, which must be present: nothing is ever pulled implicitly."""
    configured = os.environ.get(env)
    if configured and not _present(client, configured):
        raise Unavailable(f"{env}={configured} is not present locally and the harness never pulls "
                          f"implicitly: run 'docker pull {configured}' first")
    return configured or None
