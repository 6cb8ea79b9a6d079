"""Transport security switched on by settings: TLS (and SASL) to Kafka, TLS between services.

Both default to plaintext, which is what a laptop or a CI runner on loopback wants; a cluster sets
the ``BUNDLEWISE_*`` variables below from its secrets (see docs/operations.md, "TLS"). PostgreSQL
and Redis need no settings of their own: ``sslmode=verify-full`` in the PostgreSQL URL and a
``rediss://`` Redis URL switch them on.

The settings are read once per process, the first time a client or server is made, and a wrong one
fails that first use with a message naming the variable.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import grpc
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import ENV_PREFIX, load_settings


class KafkaSecuritySettings(BaseSettings):
    """``BUNDLEWISE_KAFKA_SECURITY_PROTOCOL`` and what it needs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle that signed the brokers' certificates.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate, for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Its private key.")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecuritySettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "BUNDLEWISE_KAFKA_SASL_MECHANISM, BUNDLEWISE_KAFKA_SASL_USERNAME and BUNDLEWISE_KAFKA_SASL_PASSWORD "
                f"are required with BUNDLEWISE_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("set both BUNDLEWISE_KAFKA_SSL_CERTFILE and BUNDLEWISE_KAFKA_SSL_KEYFILE, or neither")
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producers, consumers and admin clients."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_check_hostname"] = True
            if self.kafka_ssl_cafile:
                options["ssl_cafile"] = str(self.kafka_ssl_cafile)
            if self.kafka_ssl_certfile and self.kafka_ssl_keyfile:
                options["ssl_certfile"] = str(self.kafka_ssl_certfile)
                options["ssl_keyfile"] = str(self.kafka_ssl_keyfile)
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_sasl_password is not None  # checked above
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options


class GrpcTlsSettings(BaseSettings):
    """TLS on every gRPC server and channel of the process, when ``BUNDLEWISE_GRPC_TLS_CA`` is set.

    Servers present ``cert``/``key`` and, with ``require_client_cert``, accept only clients whose
    certificate the CA signed (mutual TLS); channels trust the CA and present the same pair.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    grpc_tls_ca: Path | None = Field(default=None, description="CA bundle that signed every service's certificate.")
    grpc_tls_cert: Path | None = Field(default=None, description="This service's certificate chain (PEM).")
    grpc_tls_key: Path | None = Field(default=None, description="Its private key (PEM).")
    grpc_tls_require_client_cert: bool = True

    @model_validator(mode="after")
    def _complete(self) -> GrpcTlsSettings:
        if self.grpc_tls_ca is None and (self.grpc_tls_cert or self.grpc_tls_key):
            raise ValueError("BUNDLEWISE_GRPC_TLS_CERT/KEY without BUNDLEWISE_GRPC_TLS_CA: set the CA to switch TLS on")
        if self.grpc_tls_ca is not None and (self.grpc_tls_cert is None or self.grpc_tls_key is None):
            raise ValueError("BUNDLEWISE_GRPC_TLS_CA needs BUNDLEWISE_GRPC_TLS_CERT and BUNDLEWISE_GRPC_TLS_KEY")
        return self

    @property
    def enabled(self) -> bool:
        return self.grpc_tls_ca is not None

    def _pem(self) -> tuple[bytes, bytes, bytes]:
        assert self.grpc_tls_ca is not None
        assert self.grpc_tls_cert is not None
        assert self.grpc_tls_key is not None
        return self.grpc_tls_ca.read_bytes(), self.grpc_tls_cert.read_bytes(), self.grpc_tls_key.read_bytes()

    def server_credentials(self) -> grpc.ServerCredentials:
        ca, cert, key = self._pem()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=self.grpc_tls_require_client_cert
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self._pem()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


@functools.cache
def kafka_security() -> KafkaSecuritySettings:
    """This process's Kafka security settings, read once."""
    return load_settings(KafkaSecuritySettings)


@functools.cache
def grpc_tls() -> GrpcTlsSettings:
    """This process's gRPC TLS settings, read once."""
    return load_settings(GrpcTlsSettings)
