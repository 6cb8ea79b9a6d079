"""Transport security is a matter of settings: Kafka clients get TLS/SASL options, and gRPC servers
and channels speak mutual TLS with certificates made here by openssl."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError

from shared import tls
from shared.grpc_client import open_channel, wait_until_serving
from shared.grpc_server import start_grpc_server


def test_plaintext_is_the_default_for_kafka() -> None:
    assert tls.KafkaSecuritySettings().client_options() == {"security_protocol": "PLAINTEXT"}


def test_kafka_over_tls_with_sasl_gets_every_option_it_needs() -> None:
    settings = tls.KafkaSecuritySettings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=Path("/etc/bundlewise/kafka-ca.pem"),
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bundlewise",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
    )

    assert settings.client_options() == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": "/etc/bundlewise/kafka-ca.pem",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bundlewise",
        "sasl_plain_password": "s3cret",
    }


def test_sasl_without_credentials_is_refused_naming_the_variables() -> None:
    with pytest.raises(ValidationError, match="BUNDLEWISE_KAFKA_SASL_USERNAME"):
        tls.KafkaSecuritySettings(kafka_security_protocol="SASL_SSL")


def test_a_grpc_certificate_without_its_ca_is_refused() -> None:
    with pytest.raises(ValidationError, match="BUNDLEWISE_GRPC_TLS_CA"):
        tls.GrpcTlsSettings(grpc_tls_cert=Path("cert.pem"), grpc_tls_key=Path("key.pem"))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA and one certificate it signed for 127.0.0.1 and localhost, as a service would hold."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=bundlewise-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp_path)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "service.key",
            "-out", "service.csr", cwd=tmp_path)  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "service.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "san.ext", "-out", "service.pem", cwd=tmp_path)  # fmt: skip
    return tmp_path


@pytest.fixture
def tls_environment(certificates: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BUNDLEWISE_GRPC_TLS_CA", str(certificates / "ca.pem"))
    monkeypatch.setenv("BUNDLEWISE_GRPC_TLS_CERT", str(certificates / "service.pem"))
    monkeypatch.setenv("BUNDLEWISE_GRPC_TLS_KEY", str(certificates / "service.key"))
    tls.grpc_tls.cache_clear()
    yield
    tls.grpc_tls.cache_clear()


def test_services_speak_mutual_tls_when_the_settings_say_so_and_refuse_plaintext(tls_environment: None) -> None:
    server = start_grpc_server("tls-test", [], port=0, metrics_port=0)
    try:
        secure = open_channel(f"localhost:{server.port}")
        wait_until_serving(secure, timeout_s=10)  # raises unless the TLS handshake and the call succeed
        secure.close()

        plaintext = grpc.insecure_channel(f"localhost:{server.port}")
        with pytest.raises(TimeoutError):
            wait_until_serving(plaintext, timeout_s=2)
        plaintext.close()
    finally:
        server.stop()
