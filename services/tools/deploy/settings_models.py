"""Which environment variables a process reads, derived from its pydantic-settings models.

:func:`settings_models` names the models a command is configured by (the service's own settings,
signing, the database, SQLite; a connector's host and agency settings; a sandbox's own); :func:`env_names`
gives every variable name a model reads: its prefix and field names, the aliases it accepts, and
those of the settings models nested in it. A manifest that sets anything else sets something no one
reads (a misspelt name, an old one) and the check in :mod:`services.tools.deploy.checks` says so.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence

from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from connectors.registry import connector_class
from services.connector.settings import ConnectorSettings
from services.intake.app import IntakeSettings
from services.router.app import RouterSettings
from services.runtime.failures.blip_retry import BlipRetry
from services.runtime.observe import logs, tracing
from services.runtime.shell.settings import KafkaSettings, SigningSettings
from services.runtime.storage.database import DatabaseSettings
from services.runtime.storage.sqlite import SqliteSettings
from services.tracker.app import TrackerSettings

# Read with os.environ by the runtime's logging and tracing, not by a settings model: the constants
# that hold their names, so that a manifest may set them.
OBSERVABILITY_VARIABLES = frozenset({logs.FORMAT_VARIABLE, logs.LEVEL_VARIABLE, tracing.ENDPOINT_VARIABLE})

_SERVICE_MODELS: dict[str, type[BaseSettings]] = {
    "services.intake": IntakeSettings,
    "services.router": RouterSettings,
    "services.tracker": TrackerSettings,
    "services.connector": ConnectorSettings,
}
_EVERY_SERVICE: tuple[type[BaseSettings], ...] = (SigningSettings, DatabaseSettings, SqliteSettings)
# `python -m services.tools.cli <command>`: the models of the commands a deployment runs as jobs.
_CLI_MODELS: dict[str, tuple[type[BaseSettings], ...]] = {
    "topics": (KafkaSettings,),
    "db": (DatabaseSettings,),
    "keys": (),
}


def _alias_names(alias: object) -> set[str]:
    if isinstance(alias, str):
        return {alias}
    if isinstance(alias, AliasChoices):
        return {c for c in alias.choices if isinstance(c, str)}
    if isinstance(alias, AliasPath):
        return {str(alias.path[0])}
    return set()


def env_names(model: type[BaseSettings]) -> set[str]:
    """Every variable ``model`` reads (upper case; pydantic-settings matches case-insensitively)."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        aliases = _alias_names(field.validation_alias) or _alias_names(field.alias)
        names |= {a.upper() for a in aliases} if aliases else {f"{prefix}{field_name}".upper()}
        nested = field.annotation
        if inspect.isclass(nested) and issubclass(nested, BaseSettings):
            names |= env_names(nested)  # built by its default factory, from its own variables
    return names


def _sandbox_models(module: str) -> tuple[type[BaseSettings], ...]:
    """The settings classes a sandbox's app module defines (its ``<AGENCY>_SANDBOX_*``) and the
    sandbox kit's fault settings every sandbox reads at start."""
    from connectors.sandbox_kit.faults import FaultEnvironment

    app = importlib.import_module(f"{module}.app")
    own = [
        value
        for value in vars(app).values()
        if inspect.isclass(value) and issubclass(value, BaseSettings) and value.__module__ == app.__name__
    ]
    return (*own, FaultEnvironment)


def settings_models(command: Sequence[str], env: Mapping[str, str]) -> tuple[type[BaseSettings], ...]:
    """The settings models of the process ``command`` (``python -m <module> …``) starts; ``env`` is
    what the manifest sets (a connector's models depend on its ``LIENTHONG_AGENCY``). Raises
    ValueError for a command this module does not know."""
    if list(command[:2]) != ["python", "-m"] or len(command) < 3:
        raise ValueError(f"not a `python -m` command: {list(command)}")
    module = command[2]
    if module in _SERVICE_MODELS:
        models = (_SERVICE_MODELS[module], *_EVERY_SERVICE)
        if module == "services.connector":
            agency = env.get("LIENTHONG_AGENCY", ConnectorSettings.model_fields["agency"].get_default())
            agency_settings = getattr(connector_class(str(agency)), "settings_class", None)
            models += (BlipRetry,) + ((agency_settings,) if agency_settings else ())
        return models
    if module.startswith("connectors.") and module.endswith(".sandbox"):
        return _sandbox_models(module)
    if module == "services.tools.cli" and len(command) > 3 and command[3] in _CLI_MODELS:
        return _CLI_MODELS[command[3]]
    raise ValueError(f"no settings models known for {' '.join(command)}")


def read_variables(command: Sequence[str], env: Mapping[str, str]) -> frozenset[str]:
    """Every variable the process ``command`` starts may be given."""
    names: set[str] = set()
    for model in settings_models(command, env):
        names |= env_names(model)
    if command[2].startswith("services.") and command[2] != "services.tools.cli":
        names |= OBSERVABILITY_VARIABLES
    return frozenset(names)
