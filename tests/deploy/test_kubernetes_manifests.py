"""The Kubernetes manifests: every kustomization builds, every resource is valid for the pinned
Kubernetes version, and every service's pods are built the way docs/operations.md promises."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import pytest

from services.embedding.settings import EmbeddingSettings
from services.featurestore import rebuild_cli
from shared.grpc_client import CHANNEL_OPTIONS
from shared.grpc_server import MAX_MESSAGE_BYTES
from tests.deploy.deploy_files import (
    KUBERNETES_VERSION,
    KUSTOMIZATIONS,
    MONITORING,
    OVERLAYS,
    Manifest,
    deployments,
    env_name,
    load_yaml,
    of_kind,
    render,
    service_config,
    services,
    settings_class,
)

# Custom resources of the operators the manifests rely on; kubernetes-validate has no schema for
# them, so these (and only these) are checked by their own tests below, not by the API schemas.
CUSTOM_RESOURCES = {
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
GRPC_SERVICES = {"featurestore", "embedding", "ranker", "policy"}


def resource_id(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomize_builds(kustomization: str) -> None:
    assert render(kustomization)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_resource_validates_against_the_kubernetes_api_schemas(kustomization: str) -> None:
    problems = []
    for manifest in render(kustomization):
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{resource_id(manifest)}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{resource_id(manifest)}: no schema for {manifest['apiVersion']} in {KUBERNETES_VERSION}")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_deployment_service_account_and_disruption_budget(overlay: str) -> None:
    manifests = render(overlay)
    assert set(of_kind(manifests, "Deployment")) == set(services())
    accounts = of_kind(manifests, "ServiceAccount")
    budgets = of_kind(manifests, "PodDisruptionBudget")
    for name, deployment in of_kind(manifests, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name
        assert name in accounts
        assert pod["automountServiceAccountToken"] is False
        assert budgets[name]["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_on_a_read_only_root_with_an_empty_dir_for_tmp(overlay: str) -> None:
    manifests = render(overlay)
    for name, container in deployments(manifests):
        pod = of_kind(manifests, "Deployment")[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        assert "sizeLimit" in volume["emptyDir"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_cpu_and_memory_requests_and_limits(overlay: str) -> None:
    for name, container in deployments(render(overlay)):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_probed_through_grpc_health_and_the_others_over_http(overlay: str) -> None:
    for name, container in deployments(render(overlay)):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if name in GRPC_SERVICES:
                assert container[probe]["grpc"] == {"port": ports["grpc"]}, (name, probe)
            else:
                assert "httpGet" in container[probe], (name, probe)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_headless_and_their_clients_use_dns_targets_with_round_robin(overlay: str) -> None:
    manifests = render(overlay)
    config = service_config(manifests)
    services_by_name = of_kind(manifests, "Service")
    for name in GRPC_SERVICES:
        assert services_by_name[name]["spec"]["clusterIP"] == "None", name
    addresses = {key: value for key, value in config.items() if key.endswith("_ADDR")}
    # Every address a service's settings ask for, and no other.
    assert set(addresses) == {
        env_name(field) for s in services() for field in settings_class(s).model_fields if field.endswith("_addr")
    }
    for key, address in addresses.items():
        callee = key.removeprefix("BUNDLEWISE_").removesuffix("_ADDR").lower()
        grpc_port = next(p["port"] for p in services_by_name[callee]["spec"]["ports"] if p["name"] == "grpc")
        assert address == f"dns:///{callee}.bundlewise.svc.cluster.local:{grpc_port}"
    assert ("grpc.lb_policy_name", "round_robin") in CHANNEL_OPTIONS


def test_grpc_messages_may_hold_a_full_call_of_float32_vectors() -> None:
    # The largest EmbedTexts answer: 1024 texts of up to 1024 float32 dimensions, twice over for framing.
    largest_answer = 1024 * 1024 * 4 * 2
    assert largest_answer <= MAX_MESSAGE_BYTES
    assert ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES) in CHANNEL_OPTIONS
    assert ("grpc.max_send_message_length", MAX_MESSAGE_BYTES) in CHANNEL_OPTIONS


def gpu_of(deployment: Manifest) -> tuple[Any, Any, Any]:
    pod = deployment["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    return limits.get("nvidia.com/gpu"), pod.get("nodeSelector"), pod.get("tolerations")


def test_in_production_embedding_runs_on_the_gpu_pool_and_nothing_else_does() -> None:
    manifests = render("k8s/overlays/prod")
    for name, deployment in of_kind(manifests, "Deployment").items():
        if name == "embedding":
            assert gpu_of(deployment) == (
                1,
                {"nvidia.com/gpu.present": "true"},
                [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            )
        else:
            assert gpu_of(deployment) == (None, None, None), name
    env = {
        e["name"]: e.get("value")
        for e in of_kind(manifests, "Deployment")["embedding"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BUNDLEWISE_EMBEDDING_DEVICE"] == "cuda"


def test_in_development_embedding_runs_on_any_node_without_a_gpu() -> None:
    deployment = of_kind(render("k8s/overlays/dev"), "Deployment")["embedding"]
    assert gpu_of(deployment) == (None, None, None)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BUNDLEWISE_EMBEDDING_DEVICE"] == "auto"


def test_embedding_becomes_ready_only_after_its_slow_start_and_is_never_surged() -> None:
    deployment = of_kind(render("k8s/overlays/prod"), "Deployment")["embedding"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_in_production_every_service_but_policy_autoscales_and_cpu_drives_all_but_embedding() -> None:
    manifests = render("k8s/overlays/prod")
    autoscalers = of_kind(manifests, "HorizontalPodAutoscaler")
    assert set(autoscalers) == set(services()) - {"policy"}
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        (metric,) = hpa["spec"]["metrics"]
        if name == "embedding":
            assert metric["type"] == "Pods"
            assert metric["pods"]["metric"]["name"] == "bundlewise_embedding_queue_depth"
            target = int(metric["pods"]["target"]["averageValue"])
            assert 0 < target < EmbeddingSettings.model_fields["embedding_max_queue"].default
        else:
            assert metric["resource"]["name"] == "cpu"


def test_the_ingestion_autoscaler_stops_at_the_partition_count() -> None:
    manifests = render("k8s/overlays/prod")
    partitions = int(service_config(manifests)["BUNDLEWISE_EVENTS_PARTITIONS"])
    assert of_kind(manifests, "HorizontalPodAutoscaler")["ingestion"]["spec"]["maxReplicas"] == partitions
    topic = of_kind(render("k8s/data"), "KafkaTopic")["bundlewise.events.v1"]
    assert topic["spec"]["partitions"] == partitions


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policy_is_a_single_replica_that_is_replaced_not_rolled(overlay: str) -> None:
    policy = of_kind(render(overlay), "Deployment")["policy"]
    assert policy["spec"]["replicas"] == 1
    assert policy["spec"]["strategy"] == {"type": "Recreate"}


def test_the_adapter_rule_serves_the_metric_the_embedding_autoscaler_targets() -> None:
    rules = load_yaml(MONITORING / "prometheus-adapter/rules.yaml")["rules"]["custom"]
    (rule,) = rules
    assert rule["name"]["as"] == "bundlewise_embedding_queue_depth"
    assert rule["seriesQuery"].startswith("bundlewise_embedding_queue_depth{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_images_in_production_come_from_a_registry_at_a_release_tag() -> None:
    for name, container in deployments(render("k8s/overlays/prod")):
        assert re.fullmatch(
            rf"[a-z0-9.-]+\.[a-z]+/bundlewise/{name}:\d+\.\d+\.\d+(@sha256:[0-9a-f]{{64}})?", container["image"]
        ), container["image"]


def test_custom_resources_name_the_operators_cluster_and_topics_the_services_use() -> None:
    data = render("k8s/data")
    kafka = of_kind(data, "Kafka")["bundlewise"]
    assert {listener["port"] for listener in kafka["spec"]["kafka"]["listeners"]} == {9092, 9093}
    assert set(of_kind(data, "KafkaTopic")) == {"bundlewise.events.v1", "bundlewise.events.deadletter.v1"}
    for pool in of_kind(data, "KafkaNodePool").values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "bundlewise"
        assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    cluster = of_kind(data, "Cluster")["bundlewise-pg"]
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "bundlewise"
    assert {(m["apiVersion"], m["kind"]) for m in data} - {
        ("v1", "Namespace"),
        ("v1", "Service"),
        ("apps/v1", "StatefulSet"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    } <= CUSTOM_RESOURCES


def test_the_rebuild_job_runs_the_rebuild_command_as_ingestion_with_its_confirmation() -> None:
    (job,) = of_kind(render("k8s/jobs"), "Job").values()
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "ingestion"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", "services.featurestore.rebuild_cli"]
    assert rebuild_cli.parse_args(container["args"]).yes is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ports_a_service_listens_on_are_the_ports_its_pod_service_and_scrape_annotation_name(overlay: str) -> None:
    manifests = render(overlay)
    for name, container in deployments(manifests):
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        listens = {
            "grpc": env.get("BUNDLEWISE_GRPC_PORT"),
            "metrics": env.get("BUNDLEWISE_METRICS_PORT"),
            "http": env.get("BUNDLEWISE_HTTP_PORT"),
        }
        assert {k: str(v) for k, v in ports.items()} == {k: v for k, v in listens.items() if v is not None}, name
        service_ports = {p["name"]: p["port"] for p in of_kind(manifests, "Service")[name]["spec"]["ports"]}
        assert service_ports == ports, name
        annotations = of_kind(manifests, "Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == ports.get("metrics", ports.get("http")), name
