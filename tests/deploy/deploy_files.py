"""The deployment files as the tests see them: rendered kustomizations, the resolved compose file,
the services and their settings classes, and the tools (hadolint, kubectl) of the virtual environment.

Everything here runs offline and without a cluster or a Docker engine.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

from shared.settings import BaseServiceSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
MONITORING = DEPLOY / "monitoring"

# The oldest Kubernetes minor version the manifests must be valid for (native gRPC probes need
# 1.27; autoscaling/v2 and policy/v1 are GA well before). kubernetes-validate holds its schemas.
KUBERNETES_VERSION = "1.33"

# Every kustomization that `kubectl kustomize` must build, relative to deploy/k8s or deploy/.
OVERLAYS = ("k8s/overlays/dev", "k8s/overlays/prod")
KUSTOMIZATIONS = ("k8s/base", "k8s/data", "k8s/jobs", "monitoring", *OVERLAYS)

Manifest = dict[str, Any]


def tool(name: str) -> Path:
    """A command-line tool installed into the virtual environment by requirements.txt.

    Raises:
        FileNotFoundError: the venv has no such tool (requirements.txt lost its package).
    """
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it comes with requirements.txt (scripts/venv.sh)")
    return path


def load_yaml_documents(text: str) -> list[Manifest]:
    """Every non-empty document of a YAML stream."""
    return [cast(Manifest, doc) for doc in yaml.safe_load_all(text) if doc]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def services() -> list[str]:
    """The services: each package under services/ with a ``__main__`` (what ``python -m`` runs)."""
    return sorted(p.parent.name for p in (REPO / "services").glob("*/__main__.py"))


def settings_class(service: str) -> type[BaseServiceSettings]:
    """The settings class ``services/<service>/settings.py`` declares for the service's process."""
    module = importlib.import_module(f"services.{service}.settings")
    found = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseServiceSettings) and cls.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise AssertionError(f"services/{service}/settings.py declares {len(found)} service settings classes")
    return found[0]


def env_name(field: str) -> str:
    return f"BUNDLEWISE_{field.upper()}"


# --- Kubernetes ---------------------------------------------------------------------------------


def _dev_secret_files(tree: Path) -> None:
    """The git-ignored env files the dev overlay generates Secrets from, made from their examples."""
    for example in (tree / "k8s/overlays/dev").glob("*.env.example"):
        example.with_name(example.name.removesuffix(".example")).write_text(example.read_text())


def _local_secret_files(directory: str, names: list[str]) -> set[str]:
    if Path(directory).resolve() != (K8S / "overlays/dev").resolve():
        return set()
    return {name for name in names if name.endswith(".env")}


@functools.cache
def render(kustomization: str) -> tuple[Manifest, ...]:
    """``kubectl kustomize deploy/<kustomization>``, on a copy of deploy/ with the dev overlay's
    secret files made from their ``*.example`` placeholders.

    Raises:
        AssertionError: kustomize refused the kustomization, with its message.
    """
    with tempfile.TemporaryDirectory(prefix="bundlewise-deploy-") as tmp:
        tree = Path(tmp) / "deploy"
        # Real secret files a developer made for the dev overlay are not copied: the examples stand in.
        shutil.copytree(DEPLOY, tree, ignore=_local_secret_files)
        _dev_secret_files(tree)
        result = subprocess.run(
            [str(tool("kubectl")), "kustomize", str(tree / kustomization)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"kubectl kustomize deploy/{kustomization} failed:\n{result.stderr}")
        return tuple(load_yaml_documents(result.stdout))


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> dict[str, Manifest]:
    """The manifests of ``kind`` by name."""
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def service_config(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    """The data of the ConfigMap bundlewise-config (its generated name carries a hash suffix)."""
    (config,) = [m for name, m in of_kind(manifests, "ConfigMap").items() if name.startswith("bundlewise-config-")]
    return cast(dict[str, str], config["data"])


@dataclass(frozen=True)
class ContainerEnv:
    """The environment a Deployment's container starts with, resolved against the ConfigMaps and
    Secrets of the same rendering; ``missing`` lists references that resolve to nothing."""

    values: dict[str, str]
    missing: list[str]


def container_env(
    manifests: tuple[Manifest, ...], container: Manifest, extra_secrets: Mapping[str, Manifest]
) -> ContainerEnv:
    """What ``container`` sees: envFrom ConfigMaps, then its env (values, ConfigMap and Secret keys).

    ``extra_secrets`` are Secrets ops create outside the kustomization (by name), e.g. the example.
    """
    config_maps = of_kind(manifests, "ConfigMap")
    secrets = {**extra_secrets, **of_kind(manifests, "Secret")}
    values: dict[str, str] = {}
    missing: list[str] = []

    def secret_data(secret: Manifest) -> dict[str, str]:
        import base64  # noqa: PLC0415

        data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        return {**data, **secret.get("stringData", {})}

    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        if ref in config_maps:
            values.update(config_maps[ref].get("data", {}))
        else:
            missing.append(f"configMap {ref}")
    for variable in container.get("env", []):
        name = variable["name"]
        if "value" in variable:
            values[name] = variable["value"]
            continue
        ref = variable["valueFrom"]
        if "secretKeyRef" in ref:
            secret, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
            data = secret_data(secrets[secret]) if secret in secrets else {}
        else:
            secret, key = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
            data = config_maps[secret].get("data", {}) if secret in config_maps else {}
        if key in data:
            values[name] = data[key]
        else:
            missing.append(f"{secret}/{key} for {name}")
    return ContainerEnv(values, missing)


def example_secret() -> dict[str, Manifest]:
    """The placeholder Secret of deploy/k8s/base/secret.example.yaml, by name (what prod expects ops to create)."""
    secret = cast(Manifest, load_yaml(K8S / "base/secret.example.yaml"))
    return {secret["metadata"]["name"]: secret}


def deployments(manifests: tuple[Manifest, ...]) -> Iterator[tuple[str, Manifest]]:
    """(service, its container) for every Deployment of a Bundlewise service."""
    for name, deployment in of_kind(manifests, "Deployment").items():
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1, f"{name} has {len(containers)} containers"
        yield name, containers[0]


# --- Docker Compose -----------------------------------------------------------------------------


def docker_compose() -> Path:
    """Debian's docker-compose (``make test-tools`` installs it)."""
    found = shutil.which("docker-compose")
    if found is None:
        raise FileNotFoundError(
            "docker-compose is not installed: run `make test-tools` (apt-get install docker-compose)"
        )
    return Path(found)


COMPOSE_VARIABLE_PREFIXES = ("BUNDLEWISE_", "COMPOSE_", "GRAFANA_")


@functools.cache
def compose_config(env_file: str = ".env.example") -> Manifest:
    """``docker-compose config``: the compose file parsed, validated and resolved with ``env_file``."""
    # Variables of the caller's environment would win over the env file (the Makefile exports the
    # local BUNDLEWISE_* settings), so the stack's own variables are left out.
    environment = {k: v for k, v in os.environ.items() if not k.startswith(COMPOSE_VARIABLE_PREFIXES)}
    result = subprocess.run(
        [str(docker_compose()), "--env-file", str(REPO / env_file), "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
        env=environment,
    )
    if result.returncode != 0:
        raise AssertionError(f"docker-compose config failed:\n{result.stderr}")
    return cast(Manifest, yaml.safe_load(result.stdout))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file; comments and blank lines skipped."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
