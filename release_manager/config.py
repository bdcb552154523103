"""relman's settings: environment variables named RELMAN_* or a TOML config file.

Precedence: explicit environment variable > config file > default. The config file is
`$RELMAN_CONFIG`, else `./relman.toml`, else `~/.config/relman/config.toml`.
Every setting is documented in docs/configuration.md; keep the two in step.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Dict, Optional

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from release_manager.errors import UsageError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _config_file() -> Optional[Path]:
    explicit = os.environ.get("RELMAN_CONFIG")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise UsageError(f"RELMAN_CONFIG={explicit}: no such file")
        return p
    for p in (Path("relman.toml"), Path.home() / ".config" / "relman" / "config.toml"):
        if p.is_file():
            return p
    return None


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls, path: Optional[Path]):
        super().__init__(settings_cls)
        self.path = path
        self.data: dict[str, Any] = {}
        if path:
            try:
                self.data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise UsageError(f"{path}: not valid TOML: {exc}") from None
            unknown = set(self.data) - set(settings_cls.model_fields)
            if unknown:
                raise UsageError(
                    f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
                    f"allowed: {', '.join(sorted(settings_cls.model_fields))}")

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELMAN_", extra="ignore")

    specs_dir: Path = Field(PROJECT_ROOT / "image_specs", description="folder of package specs and platforms.yaml")
    data_dir: Path = Field(Path.home() / ".local" / "share" / "relman", description="state: results, demo repos, SQLite db")
    registry: str = Field("127.0.0.1:5000", description="registry host[:port] images are pushed to")
    namespace: str = Field("fermi-lat", description="repository namespace in the registry")
    registry_user: Optional[str] = None
    registry_password: Optional[SecretStr] = None
    registry_credentials_file: Optional[Path] = Field(None, description="JSON {registry: {username, password}}")
    registry_insecure: bool = Field(True, description="talk plain HTTP to the registry (loopback registries)")
    docker_host: Optional[str] = Field(None, description="engine URL; default: DOCKER_HOST or the local socket")
    docker_timeout: int = Field(3600, description="seconds an engine call (build, push) may take")
    push_retries: int = 3
    db_url: Optional[str] = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/relman.db")
    db_lock_timeout: float = Field(30.0, gt=0, description="seconds a write waits for a locked database before failing")
    jenkins_url: Optional[str] = None
    jenkins_user: Optional[str] = None
    jenkins_token: Optional[SecretStr] = None
    jenkins_script_mode: str = Field("inline", description="inline | scm (scriptPath in the Release Manager repo)")
    jenkins_scm_url: str = Field("<placeholder: Release Manager git URL>", description="repository for scriptPath jobs")
    build_url: Optional[str] = Field(None, description="Jenkins BUILD_URL of the running build, recorded as a label")
    webhook_url: Optional[str] = None
    # Apptainer (SIFs, verification under Apptainer): the Docker image that carries it (scripts/farm/apptainer-image)
    # and the PEM private key `relman sif --sign` signs with (a path only: the key is read, never copied or shown).
    apptainer_image: str = Field("relman/apptainer:sid", description="Docker image that runs Apptainer")
    sif_signing_key: Optional[Path] = Field(None, description="PEM private key for `relman sif --sign`")
    # Sites build from mirrors: upstream URL prefix -> local path or mirror URL prefix. The spec and the
    # image labels keep naming the upstream source. Env form: 'PREFIX=MIRROR,PREFIX2=MIRROR2'.
    git_mirrors: Annotated[Dict[str, str], NoDecode] = Field(
        default_factory=dict, description="upstream git URL prefix -> mirror prefix ({data_dir} allowed)")
    # Build a spec's platform on another one (the local Debian stand-in for rhel7): always explicit,
    # named in the image's labels and the database. Env form: 'rhel7=debian12-local'.
    platform_overrides: Annotated[Dict[str, str], NoDecode] = Field(
        default_factory=dict, description="spec build platform -> platform actually built on")

    @field_validator("git_mirrors", "platform_overrides", mode="before")
    @classmethod
    def _pairs(cls, v, info):
        if not isinstance(v, str):
            return v
        out = {}
        for item in filter(None, (x.strip() for x in v.split(","))):
            key, sep, val = item.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise ValueError(f"{item!r} is not KEY=VALUE (RELMAN_{info.field_name.upper()} is a comma-separated "
                                 "list of such pairs)")
            out[key.strip()] = val.strip()
        return out

    def mirror_url(self, url: str) -> str:
        """The URL to fetch url from: the longest matching mirror prefix replaced, {data_dir} expanded."""
        best = max((p for p in self.git_mirrors if url.startswith(p)), key=len, default=None)
        if best is not None:
            url = self.git_mirrors[best] + url[len(best):]
        return url.replace("{data_dir}", str(self.data_dir))

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _TomlSource(settings_cls, _config_file()))

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'relman.db'}"


def load_settings(**overrides) -> Settings:
    # Jenkins exports BUILD_URL itself; take it when RELMAN_BUILD_URL is not set.
    if "build_url" not in overrides and not os.environ.get("RELMAN_BUILD_URL") and os.environ.get("BUILD_URL"):
        overrides["build_url"] = os.environ["BUILD_URL"]
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            name = ".".join(str(x) for x in e["loc"])
            shown = "***" if any(w in name for w in ("password", "token")) else repr(e.get("input"))
            lines.append(f"RELMAN_{name.upper()}: {e['msg']} (got {shown})")
        raise UsageError("bad configuration:\n  " + "\n  ".join(lines)) from None
