"""A PostgreSQL, Redis and Kafka of the fault tests' own, started by the project's infra scripts.

The fault tests stop, pause and flush servers; the servers of `make up` are shared, so they get a
second stack beside them: ``infra/up.sh`` with its own state folder and ports
(``BUNDLEWISE_STATE_DIR``, ``BUNDLEWISE_*_PORT``), stopped by ``infra/down.sh`` and deleted at the
end. Single servers are stopped and started with the same helpers those scripts use
(``infra/lib.sh``), so a test stops exactly what a person would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scripts.local_stack import REPO_ROOT, free_port

INFRA = REPO_ROOT / "infra"
MAIN_STATE_DIR = Path(os.environ.get("BUNDLEWISE_STATE_DIR", "/var/tmp/bundlewise"))
PARTITIONS = 3


@dataclass(frozen=True)
class PrivateServers:
    """Where the private servers listen and how to stop and start each one."""

    state_dir: Path
    pg_port: int
    redis_port: int
    kafka_port: int
    controller_port: int

    @classmethod
    def allocate(cls) -> PrivateServers:
        # A short path: PostgreSQL's Unix socket lives under it (108 bytes at most). Traversable by
        # the postgres user, which runs the server when the tests run as root.
        parent = Path(tempfile.mkdtemp(prefix="bwf-", dir="/tmp"))
        parent.chmod(0o755)
        ports = {free_port() for _ in range(8)}
        pg, redis_port, kafka, controller = sorted(ports)[:4]
        return cls(parent / "state", pg, redis_port, kafka, controller)

    @property
    def postgres_url(self) -> str:
        return f"postgresql+psycopg://bundlewise:bundlewise@127.0.0.1:{self.pg_port}/bundlewise"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def infra_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BUNDLEWISE_STATE_DIR": str(self.state_dir),
            "BUNDLEWISE_PG_PORT": str(self.pg_port),
            "BUNDLEWISE_REDIS_PORT": str(self.redis_port),
            "BUNDLEWISE_KAFKA_PORT": str(self.kafka_port),
            "BUNDLEWISE_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "BUNDLEWISE_EVENTS_PARTITIONS": str(PARTITIONS),
        }

    def up(self) -> None:
        """``infra/up.sh`` for this stack; starts whichever of the three is down.

        The main stack's resolved Kafka classpath is reused when there is one (it is keyed by the
        hash of infra/kafka/pom.xml), which spares a Maven run.
        """
        kafka_dir = self.state_dir / "kafka"
        kafka_dir.mkdir(parents=True, exist_ok=True)
        for classpath in (MAIN_STATE_DIR / "kafka").glob("classpath-*.txt"):
            if not (kafka_dir / classpath.name).exists():
                shutil.copy(classpath, kafka_dir / classpath.name)
        self._run(["bash", str(INFRA / "up.sh")], timeout_s=240)

    def down(self) -> None:
        self._run(["bash", str(INFRA / "down.sh")], timeout_s=180)

    def remove(self) -> None:
        shutil.rmtree(self.state_dir.parent, ignore_errors=True)

    def stop_postgres(self) -> None:
        """A fast shutdown: open transactions roll back and clients are disconnected."""
        self._lib('as_postgres "$(pg_bin_dir)/pg_ctl" stop -D "$BW_PG_DATA" -m fast -w -t 60 >/dev/null')

    def stop_kafka(self) -> None:
        """SIGTERM to the broker (a controlled shutdown), then wait until the process is gone."""
        self._lib(
            'pid=$(pid_from_pidfile "$BW_KAFKA_PIDFILE" kafka.Kafka); kill -TERM "$pid"; '
            'while pid_running "$pid"; do sleep 0.2; done; rm -f "$BW_KAFKA_PIDFILE"'
        )

    def _lib(self, script: str) -> None:
        self._run(["bash", "-c", f'set -euo pipefail; source "{INFRA}/lib.sh"; {script}'], timeout_s=120)

    def _run(self, command: list[str], timeout_s: float) -> None:
        result = subprocess.run(
            command, env=self.infra_env(), capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
