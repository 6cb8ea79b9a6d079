"""docker-compose.yml: it parses (Debian's docker-compose runs `config` on it with .env.example), it
starts in dependency order on health checks, and its containers are locked down as in Kubernetes."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.deploy.deploy_files import MONITORING, REPO, compose_config, docker_compose, load_yaml, services

INFRASTRUCTURE = {"kafka", "postgres", "redis", "prometheus", "grafana"}
ONE_SHOT = {"kafka-init", "migrate", "load-catalogs"}


def compose_services() -> dict[str, dict[str, Any]]:
    return dict(compose_config()["services"])


def test_the_stack_is_infrastructure_setup_jobs_and_every_service_once() -> None:
    names = set(compose_services())
    assert names == INFRASTRUCTURE | ONE_SHOT | set(services()) | {"embedding-gpu"}


def test_without_the_secrets_in_dot_env_the_stack_refuses_to_start() -> None:
    result = subprocess.run(
        [str(docker_compose()), "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO / "deploy",  # no .env there
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "set it in .env (cp .env.example .env)" in result.stderr


def test_every_long_running_container_has_a_health_check_and_waits_for_healthy_dependencies() -> None:
    for name, service in compose_services().items():
        if name in ONE_SHOT:
            continue
        assert "healthcheck" in service, name
        for dependency, condition in dict(service.get("depends_on", {})).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, (name, dependency)


def test_service_containers_are_read_only_without_capabilities_or_privilege_escalation() -> None:
    for name, service in compose_services().items():
        if name in set(services()) | {"embedding-gpu", "migrate", "load-catalogs"}:
            assert service["read_only"] is True, name
            assert service["tmpfs"] == ["/tmp"], name
            assert service["cap_drop"] == ["ALL"], name
            assert service["security_opt"] == ["no-new-privileges:true"], name


def test_the_gpu_profile_gives_the_embedding_service_a_gpu_under_the_same_name() -> None:
    cpu, gpu = compose_services()["embedding"], compose_services()["embedding-gpu"]
    assert cpu["profiles"] == ["cpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"] == {
        "resources": {"reservations": {"devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
    }
    assert gpu["networks"] == {"default": {"aliases": ["embedding"]}}
    assert "deploy" not in cpu


def test_only_the_gateway_and_the_dashboards_are_published_and_only_on_loopback() -> None:
    published = {name: service["ports"] for name, service in compose_services().items() if "ports" in service}
    assert set(published) == {"gateway", "prometheus", "grafana"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_grafana_and_prometheus_mount_the_provisioning_and_rules_from_deploy_monitoring() -> None:
    grafana = "\n".join(map(str, compose_services()["grafana"]["volumes"]))
    prometheus = "\n".join(map(str, compose_services()["prometheus"]["volumes"]))
    assert "deploy/monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "deploy/monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    assert "deploy/monitoring/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus


def test_callers_and_prometheus_use_the_ports_the_services_listen_on() -> None:
    listening = {
        name: {k: v for k, v in service.get("environment", {}).items() if k.endswith("_PORT")}
        for name, service in compose_services().items()
    }
    for name, service in compose_services().items():
        for key, value in service.get("environment", {}).items():
            if key.endswith("_ADDR"):
                host, port = str(value).rsplit(":", 1)
                assert listening[host]["BUNDLEWISE_GRPC_PORT"] == port, (name, key)
    scrape = load_yaml(MONITORING / "prometheus/prometheus.yml")["scrape_configs"]
    for job in scrape:
        ((target,),) = [c["targets"] for c in job["static_configs"]]
        host, port = target.rsplit(":", 1)
        own = listening[host]
        assert port == own.get("BUNDLEWISE_METRICS_PORT", own.get("BUNDLEWISE_HTTP_PORT")), job["job_name"]
