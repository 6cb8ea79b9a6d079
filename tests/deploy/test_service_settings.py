"""Every setting a service needs is given to it wherever it runs (Kubernetes, Docker Compose, .env),
and nothing it does not read is: each service's settings load from exactly the environment its
Deployment and its compose service give it."""

from __future__ import annotations

import base64
import re
from urllib.parse import urlparse

import pytest

from shared.settings import BaseServiceSettings, load_settings
from tests.deploy.deploy_files import (
    OVERLAYS,
    REPO,
    compose_config,
    container_env,
    deployments,
    env_name,
    example_secret,
    of_kind,
    read_env_file,
    render,
    service_config,
    services,
    settings_class,
)

# Compose services that run a Bundlewise service under another name.
COMPOSE_ALIASES = {"embedding-gpu": "embedding"}


def required_variables(cls: type[BaseServiceSettings]) -> set[str]:
    return {env_name(name) for name, field in cls.model_fields.items() if field.is_required()}


def known_variables(cls: type[BaseServiceSettings]) -> set[str]:
    return {env_name(name) for name in cls.model_fields}


def load_from(
    cls: type[BaseServiceSettings], environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> BaseServiceSettings:
    """``cls`` read from exactly ``environment``, as the process would at start."""
    import os  # noqa: PLC0415

    for variable in [v for v in os.environ if v.startswith("BUNDLEWISE_")]:
        monkeypatch.delenv(variable)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(cls)
    # A settings class may also refuse combinations at start (the gateway: API keys without a pepper).
    unsafe = getattr(settings, "unsafe_configuration", None)
    if unsafe is not None:
        assert unsafe() is None
    return settings


def compose_services() -> dict[str, tuple[str, dict[str, str]]]:
    """Compose service -> (Bundlewise service, its resolved environment)."""
    found = {}
    for name, service in compose_config()["services"].items():
        target = COMPOSE_ALIASES.get(name, name)
        if target in services():
            found[name] = (target, {k: str(v) for k, v in service.get("environment", {}).items()})
    return found


def test_the_service_list_is_the_six_of_the_architecture() -> None:
    assert services() == ["embedding", "featurestore", "gateway", "ingestion", "policy", "ranker"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", services())
def test_settings_load_from_the_environment_the_deployment_gives(
    overlay: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render(overlay)
    container = dict(deployments(manifests))[service]
    env = container_env(manifests, container, extra_secrets=example_secret())
    assert env.missing == []
    assert required_variables(settings_class(service)) <= set(env.values)
    load_from(settings_class(service), env.values, monkeypatch)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_deployment_sets_only_variables_its_service_reads(overlay: str) -> None:
    for service, container in deployments(render(overlay)):
        explicit = {variable["name"] for variable in container["env"]}
        assert explicit - known_variables(settings_class(service)) == set(), service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_shared_config_key_is_read_by_some_service(overlay: str) -> None:
    config = service_config(render(overlay))
    read = set().union(*(known_variables(settings_class(s)) for s in services()))
    assert set(config) - read == set()


def test_the_secret_example_holds_exactly_the_keys_the_deployments_read() -> None:
    (secret,) = example_secret().values()
    referenced = {
        variable["valueFrom"]["secretKeyRef"]["key"]
        for _, container in deployments(render("k8s/overlays/prod"))
        for variable in container["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert set(secret["stringData"]) == referenced
    assert all("PLACEHOLDER" in value for value in secret["stringData"].values())


def test_the_dev_secret_examples_are_placeholders_and_the_real_files_are_git_ignored() -> None:
    dev = REPO / "deploy/k8s/overlays/dev"
    gitignore = (REPO / ".gitignore").read_text().splitlines()
    examples = sorted(dev.glob("*.env.example"))
    assert [e.name for e in examples] == ["postgres.env.example", "redis.env.example", "secrets.env.example"]
    for example in examples:
        assert any("PLACEHOLDER" in value for value in read_env_file(example).values()), example.name
        assert f"/deploy/k8s/overlays/dev/{example.name.removesuffix('.example')}" in gitignore


@pytest.mark.parametrize("service", services())
def test_settings_load_from_the_environment_compose_gives(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = {name: env for name, (target, env) in compose_services().items() if target == service}
    assert runs, f"docker-compose.yml does not run {service}"
    for name, environment in runs.items():
        assert required_variables(settings_class(service)) <= set(environment), name
        assert set(environment) - known_variables(settings_class(service)) == set(), name
        load_from(settings_class(service), environment, monkeypatch)


def test_every_variable_the_compose_file_interpolates_is_in_env_example() -> None:
    interpolated = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (REPO / "docker-compose.yml").read_text()))
    example = read_env_file(REPO / ".env.example")
    assert interpolated - set(example) == set()
    secrets = {v for v in interpolated if v.endswith(("_PASSWORD", "_PEPPER"))}
    assert secrets, "the compose stack takes its passwords from .env"
    assert all("PLACEHOLDER" in example[v] for v in secrets)


def test_the_compose_file_holds_no_secret_itself() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for variable in ("PASSWORD", "PEPPER", "REDISCLI_AUTH"):
        for line in text.splitlines():
            if re.match(rf"\s*[A-Z_]*{variable}[A-Z_]*:", line):
                assert "${" in line, line


def test_in_development_the_urls_point_at_the_data_stores_with_their_passwords() -> None:
    manifests = render("k8s/overlays/dev")
    secrets = of_kind(manifests, "Secret")
    urls = container_env(manifests, dict(deployments(manifests))["ingestion"], extra_secrets={}).values

    def decoded(secret: str, key: str) -> str:
        return base64.b64decode(secrets[secret]["data"][key]).decode()

    postgres = urlparse(urls["BUNDLEWISE_POSTGRES_URL"])
    redis = urlparse(urls["BUNDLEWISE_REDIS_URL"])
    assert (postgres.username, postgres.password) == (
        decoded("bundlewise-pg-app", "username"),
        decoded("bundlewise-pg-app", "password"),
    )
    assert redis.password == decoded("bundlewise-redis", "password")
    # CloudNativePG's read-write Service, the Redis Service and Strimzi's bootstrap Service.
    cluster = of_kind(manifests, "Cluster")["bundlewise-pg"]
    assert postgres.hostname == f"{cluster['metadata']['name']}-rw.bundlewise-data.svc.cluster.local"
    assert postgres.path == "/" + cluster["spec"]["bootstrap"]["initdb"]["database"]
    assert (
        redis.hostname
        == f"{of_kind(manifests, 'Service')['redis']['metadata']['name']}.bundlewise-data.svc.cluster.local"
    )
    kafka = of_kind(manifests, "Kafka")["bundlewise"]["metadata"]["name"]
    assert urls["BUNDLEWISE_KAFKA_BOOTSTRAP"] == f"{kafka}-kafka-bootstrap.bundlewise-data.svc.cluster.local:9092"
