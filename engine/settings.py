"""Service settings from the environment and `.env` (pydantic-settings).

Contract: every key of the seed's `.env` plus the service's own settings (each documented in
the README's configuration table). Secrets are `SecretStr` so that they never print;
`secret_values()` lists them for redaction of events, responses and logs. A missing
credential does not stop the service: only the element that needs it fails. The shape limits
of a flow (`MAX_FLOW_ELEMENTS`, `MAX_FLOW_CONNECTIONS`, `MAX_REPORTED_PROBLEMS`) are read
here and enforced by `engine.validation`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

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
    # Per process: botocore's attempts per Bedrock call (the first included), and the threads,
    # hence concurrent Bedrock calls and streams, of the Bedrock service (see services.bedrock).
    bedrock_max_attempts: int = Field(default=4, ge=1, le=20)
    bedrock_max_concurrency: int = Field(default=1024, ge=1, le=8192)

    aptos_node_url: str = "https://testnet.aptoslabs.com"
    aptos_private_key: SecretStr | None = None
    aptos_allow_submit: bool = False

    log_level: str = "INFO"
    api_key: SecretStr | None = None
    api_keys: SecretStr | None = None  # `name:key,name:key`: one key per caller; flows belong to their caller
    backend2_allowed_hosts: str = ""
    max_request_bytes: int = Field(default=5_000_000, ge=1024)
    # Shape limits of a flow, checked before anything else (see engine.validation).
    max_flow_elements: int = Field(default=1000, ge=1, le=100_000)
    max_flow_connections: int = Field(default=5000, ge=1, le=500_000)
    max_reported_problems: int = Field(default=50, ge=1, le=1000)
    request_body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Loops and nesting (see elements.nesting): how deep sub-flows nest, how many element runs one
    # flow may make in all (sub-flow runs included), and the most an iteration or a loop may ask for.
    max_flow_depth: int = Field(default=5, ge=1, le=20)
    max_element_runs_per_flow: int = Field(default=10_000, ge=1, le=10_000_000)
    max_iteration_parallelism: int = Field(default=16, ge=1, le=1024)
    max_loop_iterations: int = Field(default=1000, ge=1, le=1_000_000)

    allow_custom_code: bool = True
    custom_code_max_memory_mb: int = Field(default=100, ge=16)
    custom_code_max_cpu_seconds: int = Field(default=10, ge=1)
    sandbox_resource: str = ""  # a custom Ray resource: only nodes offering it get a sandbox actor
    coordinator_resource: str = ""  # a custom Ray resource the coordinators and streamers require

    # The run store (see engine.run_store): `sqlite` (default: DATA_DIR/runs.sqlite3), `postgres`
    # (RUN_STORE_URL=postgresql://…; a URL alone selects it) or `memory` (tests, benchmarks).
    run_store: Literal["sqlite", "postgres", "memory"] | None = None
    run_store_url: SecretStr | None = None
    data_dir: str = "data"

    event_retention_seconds: float = Field(default=3600, ge=0)
    event_buffer_limit: int = Field(default=10_000, ge=10)
    # FlowCoordinator actors, each with its own streamer: a number (1-64), or `auto`: one per two
    # CPUs of the cluster when the pool is first created, at least 2 (see `actors.names`).
    coordinator_count: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"

    # outbound connections and retention
    backend2_denied_ports: str = "6379,8000,8076,8080,8265,8404,8500,9101,10001-19999,30000-31000,52365"
    backend2_max_connect_attempts: int = Field(default=20, ge=1)
    max_event_bytes: int = Field(default=512 * 1024, ge=4096, le=1_000_000)
    event_value_max_bytes: int = Field(default=64 * 1024, ge=256)
    events_page_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    event_log_max_flow_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    event_log_max_total_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024)

    @field_validator(
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aptos_private_key", "api_key", "api_keys",
        "bedrock_endpoint_url", "run_store_url", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def caller_keys(self) -> dict[str, str]:
        """Bearer keys by caller name: `API_KEYS` entries, and the shared `API_KEY` as `default`."""
        keys = {}
        if self.api_keys is not None:
            for entry in self.api_keys.get_secret_value().split(","):
                name, _, key = entry.strip().partition(":")
                if name.strip() and key.strip():
                    keys[name.strip()] = key.strip()
        if self.api_key is not None:
            keys.setdefault("default", self.api_key.get_secret_value())
        return keys

    def run_store_kind(self) -> Literal["sqlite", "postgres", "memory"]:
        """`RUN_STORE`, else `postgres` when `RUN_STORE_URL` is set, else `sqlite`."""
        if self.run_store is not None:
            return self.run_store
        return "postgres" if self.run_store_url is not None else "sqlite"

    def secret_values(self) -> list[str]:
        secrets = (
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
            self.aptos_private_key,
            self.api_key,
            self.run_store_url,  # may hold a database password
        )
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        return values + [key for name, key in self.caller_keys().items() if name != "default"]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return Settings()
