"""The NetworkPolicies allow exactly the calls the code makes.

The calls are derived from the services' settings, not written down a second time: a service calls
another over gRPC when its settings have ``<callee>_addr``; it reaches PostgreSQL, Redis or Kafka
when its settings have ``postgres_url``, ``redis_url`` or ``kafka_bootstrap`` and its Deployment sets
it (optional ones, like the gateway's PostgreSQL, count only when set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest

from tests.deploy.deploy_files import (
    OVERLAYS,
    Manifest,
    container_env,
    deployments,
    example_secret,
    of_kind,
    render,
    service_config,
    services,
    settings_class,
)

NAME_LABEL = "app.kubernetes.io/name"
DATA_NAMESPACE = "bundlewise-data"
# How each data store's pods are selected, and the setting that points a service at it.
DATA_STORES = {
    "kafka": ({"strimzi.io/cluster": "bundlewise"}, "kafka_bootstrap"),
    "postgres": ({"cnpg.io/cluster": "bundlewise-pg"}, "postgres_url"),
    "redis": ({NAME_LABEL: "redis"}, "redis_url"),
}
# Callers from outside the namespace: the ingress controller (the storefront's way in) and Prometheus.
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"


@dataclass
class Allowed:
    """What the policies of one service allow: callee -> ports, data store -> ports, callers."""

    egress: dict[str, set[int]] = field(default_factory=dict)
    data: dict[str, set[int]] = field(default_factory=dict)
    ingress: dict[str, set[int]] = field(default_factory=dict)


def ports_of(rule: Manifest) -> set[int]:
    ports = {p["port"] for p in rule.get("ports", [])}
    assert all(isinstance(p, int) for p in ports), f"numbered ports only: {rule}"
    return ports


def namespace_of(peer: Manifest) -> str | None:
    selector = peer.get("namespaceSelector")
    if selector is None:
        return None
    return str(selector["matchLabels"]["kubernetes.io/metadata.name"])


def data_store_of(peer: Manifest) -> str:
    labels = peer["podSelector"]["matchLabels"]
    (store,) = [name for name, (selector, _) in DATA_STORES.items() if selector == labels]
    return store


def allowed_by_policies(manifests: tuple[Manifest, ...]) -> dict[str, Allowed]:
    allowed = {service: Allowed() for service in services()}
    for name, policy in of_kind(manifests, "NetworkPolicy").items():
        if policy["metadata"].get("namespace") != "bundlewise":
            continue
        selector = policy["spec"]["podSelector"]
        if not selector:
            continue  # the namespace-wide ones, checked on their own below
        service = selector["matchLabels"][NAME_LABEL]
        assert name == service, f"the policy of {service} is named {name}"
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                namespace = namespace_of(peer)
                if namespace is None:
                    callee = peer["podSelector"]["matchLabels"][NAME_LABEL]
                    allowed[service].egress.setdefault(callee, set()).update(ports_of(rule))
                else:
                    assert namespace == DATA_NAMESPACE, f"{service} may reach the namespace {namespace}"
                    allowed[service].data.setdefault(data_store_of(peer), set()).update(ports_of(rule))
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                namespace = namespace_of(peer)
                if namespace is None:
                    caller = peer["podSelector"]["matchLabels"][NAME_LABEL]
                else:
                    assert "podSelector" not in peer, f"{service}: select whole namespaces only: {peer}"
                    caller = f"namespace {namespace}"
                allowed[service].ingress.setdefault(caller, set()).update(ports_of(rule))
    return allowed


def calls_the_code_makes(manifests: tuple[Manifest, ...]) -> dict[str, Allowed]:
    """What each service calls, from its settings class and the environment its Deployment gives."""
    grpc_ports = {
        name: next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
        for name, service in of_kind(manifests, "Service").items()
        if any(p["name"] == "grpc" for p in service["spec"]["ports"])
    }
    data_ports = data_store_ports(manifests)
    calls = {service: Allowed() for service in services()}
    for service, container in deployments(manifests):
        env = container_env(manifests, container, extra_secrets=example_secret()).values
        fields = settings_class(service).model_fields
        for name in fields:
            if name.endswith("_addr"):
                callee = name.removesuffix("_addr")
                calls[service].egress[callee] = {grpc_ports[callee]}
                calls[callee].ingress[service] = {grpc_ports[callee]}
        for store, (_, setting_name) in DATA_STORES.items():
            declared = fields.get(setting_name)
            if declared is not None and (declared.is_required() or f"BUNDLEWISE_{setting_name.upper()}" in env):
                calls[service].data[store] = {data_ports[store]}
    calls["gateway"].ingress[f"namespace {INGRESS_NAMESPACE}"] = {
        next(p["containerPort"] for p in dict(deployments(manifests))["gateway"]["ports"] if p["name"] == "http")
    }
    return calls


def data_store_ports(manifests: tuple[Manifest, ...]) -> dict[str, int]:
    """The port of each data store in the addresses the services are given."""
    config = service_config(manifests)
    (secret,) = example_secret().values()
    return {
        "kafka": int(config["BUNDLEWISE_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]),
        "postgres": urlparse(secret["stringData"]["BUNDLEWISE_POSTGRES_URL"]).port or 5432,
        "redis": urlparse(secret["stringData"]["BUNDLEWISE_REDIS_URL"]).port or 6379,
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", services())
def test_a_service_may_call_exactly_what_its_settings_point_it_at(overlay: str, service: str) -> None:
    manifests = render(overlay)
    allowed = allowed_by_policies(manifests)[service]
    expected = calls_the_code_makes(manifests)[service]
    assert allowed.egress == expected.egress
    assert allowed.data == expected.data


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", services())
def test_a_service_accepts_calls_only_from_the_services_that_make_them(overlay: str, service: str) -> None:
    manifests = render(overlay)
    assert allowed_by_policies(manifests)[service].ingress == calls_the_code_makes(manifests)[service].ingress


def test_the_ranker_calls_policy_and_embedding_and_the_gateway_calls_ranker_and_embedding() -> None:
    # An anchor for the derivation above: if the settings stop naming these calls, it would allow nothing.
    calls = calls_the_code_makes(render("k8s/overlays/prod"))
    assert set(calls["ranker"].egress) == {"featurestore", "policy", "embedding"}
    assert set(calls["gateway"].egress) == {"ranker", "embedding"}
    assert set(calls["ingestion"].data) == {"kafka", "postgres", "redis"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_else_is_denied_and_only_dns_and_scrapes_are_allowed_namespace_wide(overlay: str) -> None:
    policies = of_kind(render(overlay), "NetworkPolicy")
    namespace_wide = {
        name: p["spec"]
        for name, p in policies.items()
        if p["metadata"]["namespace"] == "bundlewise" and not p["spec"]["podSelector"]
    }
    assert namespace_wide["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    (dns,) = namespace_wide["allow-dns"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [namespace_of(peer) for peer in dns["to"]] == ["kube-system"]
    (scrape,) = namespace_wide["allow-prometheus-scrape"]["ingress"]
    assert [namespace_of(peer) for peer in scrape["from"]] == [MONITORING_NAMESPACE]
    assert {p["port"] for p in scrape["ports"]} == {"metrics", "http"}
    assert set(namespace_wide) == {"default-deny", "allow-dns", "allow-prometheus-scrape"}


def test_the_data_store_selectors_match_the_pods_the_data_manifests_make() -> None:
    data = render("k8s/data")
    kafka = of_kind(data, "KafkaNodePool")["dual-role"]
    assert kafka["metadata"]["labels"] == {**kafka["metadata"]["labels"], **DATA_STORES["kafka"][0]}
    assert "bundlewise-pg" in of_kind(data, "Cluster")
    redis = of_kind(data, "StatefulSet")["redis"]["spec"]["template"]["metadata"]["labels"]
    assert redis == {**redis, **DATA_STORES["redis"][0]}
    assert {m["metadata"]["namespace"] for m in data if m["kind"] != "Namespace"} == {DATA_NAMESPACE}
