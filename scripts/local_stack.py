"""Runs Bundlewise's services as local processes against `make up`'s servers.

Used by `make demo` (fixed ports from config/local.env, state under BUNDLEWISE_STATE_DIR) and by the
integration tests (ephemeral ports, their own namespace and topics, so they never touch live state).
Each service is the same ``python -m services.<name>`` a container runs.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from shared.grpc_client import open_channel, wait_until_serving
from shared.store.api_keys import PEPPER_VARIABLE, SCOPES, issue_key
from shared.store.migrate import make_engine, upgrade_to_head

REPO_ROOT = Path(__file__).resolve().parent.parent
GRPC_SERVICES = {
    "featurestore": "bundlewise.featurestore.v1.FeatureStore",
    "embedding": "bundlewise.embedding.v1.Embedding",
    "policy": "bundlewise.policy.v1.Policy",
    "ranker": "bundlewise.ranker.v1.Ranker",
}
INGESTION_READY = re.compile(rb"^bundlewise_ingestion_group_member 1\.0$", re.MULTILINE)
# Start order: a service's dependencies come before it.
START_ORDER = ("featurestore", "embedding", "policy", "ranker", "ingestion", "gateway")
# The stack's own key may do everything, and its rate limit is far above what one machine can send,
# so that tests and benchmarks measure the services, not the limit (which stays on).
STACK_KEY_RATE_PER_S = 1_000_000.0
STACK_KEY_BURST = 1_000_000


def local_pepper(state_dir: Path) -> str:
    """This machine's API-key pepper for `make demo` and bin/bundlewise: ``<state_dir>/secrets/api-key-pepper``,
    created once (owner-only) when missing. A deployment sets BUNDLEWISE_API_KEY_PEPPER from its secret store."""
    path = state_dir / "secrets" / "api-key-pepper"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait for a graceful exit; returns the exit code (SIGKILL after timeout)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class LocalStack:
    """Addresses and environment of one set of services; :meth:`start` launches them."""

    base_env: Mapping[str, str]
    log_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    api_key: str | None = None
    """A key with every scope, issued when the gateway starts with key checks on (see :meth:`start`)."""
    pepper: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """The gateway's BUNDLEWISE_API_KEY_PEPPER unless the environment sets one."""

    @classmethod
    def with_free_ports(cls, base_env: Mapping[str, str], log_dir: Path) -> LocalStack:
        return cls(base_env, log_dir, {name: free_port() for name in START_ORDER})

    @classmethod
    def with_default_ports(cls, base_env: Mapping[str, str], log_dir: Path) -> LocalStack:
        ports = {"featurestore": 50051, "embedding": 50052, "ranker": 50053, "policy": 50054}
        ports |= {"ingestion": 9105, "gateway": int(base_env.get("BUNDLEWISE_HTTP_PORT", "8000"))}
        return cls(base_env, log_dir, ports)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def service_env(self, name: str) -> dict[str, str]:
        env = {**os.environ, **self.base_env}
        env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'shared' / 'generated'}"
        env["BUNDLEWISE_FEATURESTORE_ADDR"] = self.address("featurestore")
        env["BUNDLEWISE_EMBEDDING_ADDR"] = self.address("embedding")
        env["BUNDLEWISE_RANKER_ADDR"] = self.address("ranker")
        env["BUNDLEWISE_POLICY_ADDR"] = self.address("policy")
        env.setdefault(PEPPER_VARIABLE, self.pepper)
        if name == "gateway":
            env["BUNDLEWISE_HTTP_PORT"] = str(self.ports["gateway"])
            env["BUNDLEWISE_METRICS_PORT"] = "0"
        elif name not in self.ports:  # a one-off command (loader, rebuild) beside the services
            pass
        elif name == "ingestion":
            env["BUNDLEWISE_METRICS_PORT"] = str(self.ports["ingestion"])
        else:
            env["BUNDLEWISE_GRPC_PORT"] = str(self.ports[name])
            env["BUNDLEWISE_METRICS_PORT"] = "0"
        return env

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <api_key>``, or nothing when the gateway checks no keys."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def issue_api_key(self, name: str, scopes: tuple[str, ...], **limits: float) -> str:
        """A new key of the gateway's namespace (``rate_per_s``, ``burst`` optional); its plaintext."""
        env = self.service_env("gateway")
        engine = make_engine(env["BUNDLEWISE_POSTGRES_URL"], env.get("BUNDLEWISE_NAMESPACE", "live"), pool_size=1)
        try:
            return issue_key(
                engine,
                name,
                scopes,
                pepper=env[PEPPER_VARIABLE],
                rate_per_s=limits.get("rate_per_s"),
                burst=int(limits["burst"]) if "burst" in limits else None,
            )
        finally:
            engine.dispose()

    def start(self, names: tuple[str, ...] = START_ORDER, timeout_s: float = 120.0) -> None:
        """Starts ``names`` in dependency order and waits until each is healthy.

        With the gateway among them and its key checks on (the default), the namespace is migrated
        and a key with every scope is issued first: :attr:`api_key`, :meth:`auth_headers`.

        Raises:
            RuntimeError: a service exited or did not become healthy; the message holds its log tail.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if "gateway" in names and self._gateway_checks_keys():
            gateway_env = self.service_env("gateway")
            upgrade_to_head(gateway_env["BUNDLEWISE_POSTGRES_URL"], gateway_env.get("BUNDLEWISE_NAMESPACE", "live"))
            self.api_key = self.issue_api_key(
                "local-stack", SCOPES, rate_per_s=STACK_KEY_RATE_PER_S, burst=STACK_KEY_BURST
            )
        for name in names:
            log_path = self.log_dir / f"{name}.log"
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"],
                    cwd=REPO_ROOT,
                    env=self.service_env(name),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.processes[name] = ServiceProcess(name, process, log_path, self.ports[name])
        for name in names:
            self.wait_healthy(name, timeout_s)

    def _gateway_checks_keys(self) -> bool:
        return self.service_env("gateway").get("BUNDLEWISE_AUTH_ENABLED", "true").lower() not in ("false", "0", "no")

    def wait_healthy(self, name: str, timeout_s: float) -> None:
        service = self.processes[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{service.log_tail()}")
            if self._is_healthy(name):
                return
            time.sleep(0.3)
        raise RuntimeError(f"{name} not healthy after {timeout_s}s:\n{service.log_tail()}")

    def _is_healthy(self, name: str) -> bool:
        if name in GRPC_SERVICES:
            channel = open_channel(self.address(name))
            try:
                wait_until_serving(channel, GRPC_SERVICES[name], timeout_s=0.5)
                return True
            except (TimeoutError, grpc.RpcError):
                return False
            finally:
                channel.close()
        url = f"{self.gateway_url}/healthz" if name == "gateway" else f"http://127.0.0.1:{self.ports[name]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                body = reply.read()
                if name == "ingestion":  # ready once its consumer has joined the group
                    return INGESTION_READY.search(body) is not None
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> dict[str, int]:
        """Stops every service in reverse start order; returns each exit code."""
        codes = {}
        for name in reversed(list(self.processes)):
            codes[name] = self.processes[name].stop()
        self.processes.clear()
        return codes
