"""Service settings from the environment and `.env` (pydantic-settings).

Contract: every key of the seed's `.env` plus SPEC §6. Secrets are `SecretStr` so that they
never print; `secret_values()` lists them for redaction of events, responses and logs.
A missing credential does not stop the service: only the element that needs it fails.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    aws_region: str = "us-west-2"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    bedrock_model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"
    bedrock_endpoint_url: str | None = None

    aptos_node_url: str = "https://testnet.aptoslabs.com"
    aptos_private_key: SecretStr | None = None
    aptos_allow_submit: bool = False

    log_level: str = "INFO"
    api_key: SecretStr | None = None
    backend2_allowed_hosts: str = ""
    max_request_bytes: int = Field(default=5_000_000, ge=1024)

    allow_custom_code: bool = True
    custom_code_max_memory_mb: int = Field(default=100, ge=16)
    custom_code_max_cpu_seconds: int = Field(default=10, ge=1)
    sandbox_resource: str = ""  # a custom Ray resource that pins the sandbox actor to dedicated nodes

    event_retention_seconds: float = Field(default=3600, ge=0)
    event_buffer_limit: int = Field(default=10_000, ge=10)
    coordinator_count: int = Field(default=2, ge=1, le=64)

    @field_validator(
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aptos_private_key", "api_key",
        "bedrock_endpoint_url", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.backend2_allowed_hosts.split(",") if h.strip())

    def secret_values(self) -> list[str]:
        secrets = (
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
            self.aptos_private_key,
            self.api_key,
        )
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return Settings()
