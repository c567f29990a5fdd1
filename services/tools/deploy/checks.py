"""Offline checks of deployment manifests: each takes the rendered objects (Kubernetes) or the Compose
document and returns the problems it finds, one sentence each (none: the list is empty).

The same functions check the committed manifests (tests/unit/test_deploy_offline.py asserts no
problem) and deliberately broken copies (it asserts the one problem). Nothing here needs a cluster,
a Docker engine or a broker.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from services.tools.deploy.components import is_dns_label
from services.tools.deploy.secrets import SuppliedSecret
from services.tools.deploy.settings_models import read_variables

Object = dict[str, Any]

_POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Kinds whose names become host names (DNS-1123 labels); every other name is a DNS-1123 subdomain.
_LABEL_NAMED = {"Service", "Namespace"}
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SCRATCH = ("/tmp",)  # where an emptyDir may be mounted: scratch space, never state


class KustomizeMissing(RuntimeError):
    """Neither kubectl nor kustomize is on PATH."""


def kustomize_command() -> list[str]:
    """``kubectl kustomize`` or, without kubectl, ``kustomize build``."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise KustomizeMissing("neither kubectl nor kustomize is installed (.ci/run installs kustomize)")


def kustomize_build(directory: Path) -> list[Object]:
    """The objects ``kubectl kustomize directory`` renders (RuntimeError with its message if it fails)."""
    done = subprocess.run(
        [*kustomize_command(), str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kustomize build {directory} failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _name(obj: Object) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_spec(obj: Object) -> dict[str, Any] | None:
    if obj.get("kind") == "Pod":
        return obj.get("spec")  # type: ignore[no-any-return]
    if obj.get("kind") in _POD_OWNERS:
        return obj.get("spec", {}).get("template", {}).get("spec")  # type: ignore[no-any-return]
    return None


def _containers(obj: Object) -> Iterator[dict[str, Any]]:
    spec = pod_spec(obj) or {}
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


# --- names ------------------------------------------------------------------------------------------


def check_names(objects: Sequence[Object]) -> list[str]:
    """Every object, container and port name is one Kubernetes accepts (DNS-1123; ports IANA-style)."""
    problems = []
    for obj in objects:
        name = str(obj.get("metadata", {}).get("name", ""))
        if obj.get("kind") in _LABEL_NAMED:
            if not is_dns_label(name):
                problems.append(f"{_name(obj)}: the name is not a DNS-1123 label")
        elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            problems.append(f"{_name(obj)}: the name is not a DNS-1123 subdomain")
        for container in _containers(obj):
            if not is_dns_label(str(container.get("name", ""))):
                problems.append(f"{_name(obj)}: container {container.get('name')!r} is not a DNS-1123 label")
            for port in container.get("ports", []):
                if "name" in port and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?", port["name"]):
                    problems.append(f"{_name(obj)}: port name {port['name']!r} is not an IANA service name")
    return problems


# --- schemas ----------------------------------------------------------------------------------------

# The custom resources the manifests use, checked against the fields this deployment relies on: their
# operators publish the full CRDs, which kubernetes-validate does not ship and this check does not
# download. Each schema is the part of the CRD the manifests use (required fields and their types).
_KAFKA_ACL = {
    "type": "object",
    "required": ["resource", "operations"],
    "properties": {
        "resource": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": ["topic", "group", "cluster", "transactionalId"]},
                "name": {"type": "string"},
                "patternType": {"enum": ["literal", "prefix"]},
            },
        },
        "operations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "enum": [
                    "Read",
                    "Write",
                    "Create",
                    "Delete",
                    "Alter",
                    "Describe",
                    "ClusterAction",
                    "AlterConfigs",
                    "DescribeConfigs",
                    "IdempotentWrite",
                    "All",
                ]
            },
        },
        "host": {"type": "string"},
    },
}
_SECRET_KEY_REF = {
    "type": "object",
    "required": ["name", "key"],
    "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name", "labels"],
                "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "properties": {
                    "authentication": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"enum": ["tls", "tls-external", "scram-sha-512"]},
                            "password": {
                                "type": "object",
                                "required": ["valueFrom"],
                                "properties": {
                                    "valueFrom": {
                                        "type": "object",
                                        "required": ["secretKeyRef"],
                                        "properties": {"secretKeyRef": _SECRET_KEY_REF},
                                    }
                                },
                            },
                        },
                    },
                    "authorization": {
                        "type": "object",
                        "required": ["type", "acls"],
                        "properties": {
                            "type": {"const": "simple"},
                            "acls": {"type": "array", "items": _KAFKA_ACL},
                        },
                    },
                },
            },
        },
    },
    ("postgresql.cnpg.io/v1", "Cluster"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["instances", "storage"],
                "properties": {
                    "instances": {"type": "integer", "minimum": 1},
                    "storage": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {"size": {"type": "string"}},
                    },
                    "bootstrap": {
                        "type": "object",
                        "properties": {
                            "initdb": {
                                "type": "object",
                                "properties": {"database": {"type": "string"}, "owner": {"type": "string"}},
                            }
                        },
                    },
                },
            }
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "properties": {"port": {"type": "string"}},
                        },
                    },
                },
            }
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "rules": {
                                    "type": "array",
                                    "items": {"type": "object", "required": ["expr"]},
                                }
                            },
                        },
                    }
                },
            }
        },
    },
}


def check_schemas(objects: Sequence[Object], kubernetes_version: str | None = None) -> list[str]:
    """Every object validates: built-in kinds against the Kubernetes API schemas (kubernetes-validate,
    strict: no unknown field), the custom resources against :data:`CRD_SCHEMAS`."""
    import jsonschema  # type: ignore[import-untyped]
    import kubernetes_validate  # type: ignore[import-untyped]

    version = kubernetes_version or kubernetes_validate.latest_version()
    problems = []
    for obj in objects:
        crd = CRD_SCHEMAS.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
        if crd is not None:
            for error in jsonschema.Draft7Validator(crd).iter_errors(obj):
                where = "/".join(str(p) for p in error.absolute_path)
                problems.append(f"{_name(obj)}: {where}: {error.message}")
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{_name(obj)}: {obj.get('apiVersion')} {obj.get('kind')} has no known schema")
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path)  # type: ignore[attr-defined]
            problems.append(f"{_name(obj)}: {where}: {error.message}")  # type: ignore[attr-defined]
    return problems


# --- environment, references, commands, volumes -----------------------------------------------------


def _index(objects: Sequence[Object], kind: str) -> dict[str, set[str]]:
    """The keys of every ConfigMap or Secret, by name."""
    found: dict[str, set[str]] = {}
    for obj in objects:
        if obj.get("kind") == kind:
            keys = {*(obj.get("data") or {}), *(obj.get("stringData") or {}), *(obj.get("binaryData") or {})}
            found[str(obj["metadata"]["name"])] = keys
    return found


def _secret_keys(
    objects: Sequence[Object], supplied: Mapping[str, SuppliedSecret]
) -> dict[str, set[str] | None]:
    known: dict[str, set[str] | None] = {
        n: (set(s.keys) if s.keys is not None else None) for n, s in supplied.items()
    }
    return known | dict(_index(objects, "Secret"))


def argv(container: Mapping[str, Any]) -> list[str]:
    """What the container runs: its command, then its args."""
    return [*container.get("command", []), *container.get("args", [])]


def container_env(
    container: Mapping[str, Any], objects: Sequence[Object], supplied: Mapping[str, SuppliedSecret]
) -> dict[str, str]:
    """Every variable the container is given, with its literal value ('' when it comes from a ref)."""
    config_maps, secrets = _index(objects, "ConfigMap"), _secret_keys(objects, supplied)
    values = {
        str(o["metadata"]["name"]): {**(o.get("data") or {}), **(o.get("stringData") or {})}
        for o in objects
        if o.get("kind") in ("ConfigMap", "Secret")
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            keys: set[str] | None = config_maps.get(name, set())
        else:
            name = source["secretRef"]["name"]
            keys = secrets.get(name) or set()
        for key in keys or set():
            env[prefix + key] = str(values.get(name, {}).get(key, ""))
    for variable in container.get("env", []):
        env[variable["name"]] = str(variable.get("value", ""))
    return env


def check_env(objects: Sequence[Object], supplied: Mapping[str, SuppliedSecret]) -> list[str]:
    """Every variable a container is given (``env`` and the keys ``envFrom`` brings) is one its
    process reads: a field of its settings models (:mod:`services.tools.deploy.settings_models`)."""
    problems = []
    for obj in objects:
        for container in _containers(obj):
            command = argv(container)
            env = container_env(container, objects, supplied)
            try:
                read = read_variables(command, env)
            except (ValueError, ImportError, LookupError) as error:
                problems.append(f"{_name(obj)}: {error}")
                continue
            for variable in sorted(env):
                if variable.upper() not in read:
                    problems.append(
                        f"{_name(obj)}: sets {variable}, which `{' '.join(command[:4])}` does not read"
                    )
    return problems


def _references(obj: Object) -> Iterator[tuple[str, str, str | None, bool]]:
    """(kind, name, key or None for the whole object, optional) of each ConfigMap/Secret it uses."""
    spec = pod_spec(obj) or {}
    for container in _containers(obj):
        for source in container.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    yield kind, source[field]["name"], None, bool(source[field].get("optional"))
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {})
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in ref:
                    yield kind, ref[field]["name"], ref[field]["key"], bool(ref[field].get("optional"))
    for volume in spec.get("volumes", []):
        for field, kind, name_field in (
            ("configMap", "ConfigMap", "name"),
            ("secret", "Secret", "secretName"),
        ):
            if field in volume:
                source = volume[field]
                optional = bool(source.get("optional"))
                items = source.get("items")
                if not items:
                    yield kind, source[name_field], None, optional
                for item in items or []:
                    yield kind, source[name_field], item["key"], optional
    if obj.get("kind") == "KafkaUser":
        ref = obj.get("spec", {}).get("authentication", {}).get("password", {}).get("valueFrom", {})
        if "secretKeyRef" in ref:
            yield "Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"], False


def check_references(objects: Sequence[Object], supplied: Mapping[str, SuppliedSecret]) -> list[str]:
    """Every ConfigMap and Secret key a container, volume or KafkaUser uses exists: rendered, or a
    Secret declared as supplied (:func:`services.tools.deploy.secrets.supplied_secrets`)."""
    found = {"ConfigMap": {k: set(v) for k, v in _index(objects, "ConfigMap").items()}}
    secrets = _secret_keys(objects, supplied)
    problems = []
    for obj in objects:
        for kind, name, key, optional in _references(obj):
            if optional:
                continue
            if kind == "Secret":
                if name not in secrets:
                    problems.append(
                        f"{_name(obj)}: Secret {name} is neither rendered nor declared as supplied"
                    )
                elif key is not None and secrets[name] is not None and key not in (secrets[name] or set()):
                    problems.append(f"{_name(obj)}: Secret {name} has no key {key}")
            elif name not in found["ConfigMap"]:
                problems.append(f"{_name(obj)}: ConfigMap {name} is not rendered")
            elif key is not None and key not in found["ConfigMap"][name]:
                problems.append(f"{_name(obj)}: ConfigMap {name} has no key {key}")
    return problems


def module_of(command: Sequence[str]) -> str | None:
    """The module of a ``python -m <module>`` command; None for any other command."""
    if list(command[:2]) == ["python", "-m"] and len(command) > 2:
        return command[2]
    return None


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_commands(objects: Sequence[Object]) -> list[str]:
    """Every container of ours runs ``python -m <module>`` of a module that exists."""
    problems = []
    for obj in objects:
        for container in _containers(obj):
            command = argv(container)
            module = module_of(command)
            if module is None:
                problems.append(f"{_name(obj)}: {command} is not `python -m <module>`")
            elif not importable(module):
                problems.append(f"{_name(obj)}: `python -m {module}`: no such module")
    return problems


def check_state_volumes(objects: Sequence[Object]) -> list[str]:
    """No emptyDir is mounted anywhere but scratch space (/tmp): state outlives its pod."""
    problems = []
    for obj in objects:
        spec = pod_spec(obj) or {}
        empty = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in _containers(obj):
            for mount in container.get("volumeMounts", []):
                path = str(mount["mountPath"])
                if mount["name"] in empty and not any(
                    path == s or path.startswith(s + "/") for s in _SCRATCH
                ):
                    problems.append(
                        f"{_name(obj)}: {path} is on emptyDir {mount['name']}, which dies with its pod"
                    )
    return problems


def check_kubernetes(
    objects: Sequence[Object], supplied: Mapping[str, SuppliedSecret], kubernetes_version: str | None = None
) -> list[str]:
    """Every check of rendered Kubernetes objects."""
    return [
        *check_names(objects),
        *check_schemas(objects, kubernetes_version),
        *check_env(objects, supplied),
        *check_references(objects, supplied),
        *check_commands(objects),
        *check_state_volumes(objects),
    ]


# --- Docker Compose ---------------------------------------------------------------------------------


def _ours(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The Compose services that run our image."""
    return {
        n: s
        for n, s in document.get("services", {}).items()
        if str(s.get("image", "")).startswith("lienthong")
    }


def check_compose_names(document: Mapping[str, Any]) -> list[str]:
    """Every service name is a DNS-1123 label: it is the host name the others reach it at."""
    return [f"service {n}: not a DNS-1123 label" for n in document.get("services", {}) if not is_dns_label(n)]


def check_compose_commands(document: Mapping[str, Any]) -> list[str]:
    """Every service of ours runs ``python -m <module>`` (its entrypoint too, when it has one) of a
    module that exists."""
    problems = []
    for name, service in _ours(document).items():
        for part in ("entrypoint", "command"):
            if part not in service:
                continue
            module = module_of(service[part])
            if module is None:
                problems.append(f"service {name}: {part} {service[part]} is not `python -m <module>`")
            elif not importable(module):
                problems.append(f"service {name}: `python -m {module}`: no such module")
    return problems


def check_compose_env(document: Mapping[str, Any], env_files: Mapping[str, Sequence[str]]) -> list[str]:
    """Every variable a service of ours is given (its ``environment`` and, for one started through the
    credentials launcher, the keys of that file: ``env_files``) is one its process reads."""
    problems = []
    for name, service in _ours(document).items():
        env = {str(k): str(v) for k, v in (service.get("environment") or {}).items()}
        entrypoint = service.get("entrypoint") or []
        for path in entrypoint[3:-1] if module_of(entrypoint) else []:
            if path not in env_files:
                problems.append(f"service {name}: reads {path}, which the keys job does not write")
            env |= dict.fromkeys(env_files.get(path, ()), "")
        command = list(service.get("command") or [])
        try:
            read = read_variables(command, env)
        except (ValueError, ImportError, LookupError) as error:
            problems.append(f"service {name}: {error}")
            continue
        for variable in sorted(env):
            if variable.upper() not in read:
                problems.append(
                    f"service {name}: sets {variable}, which `{' '.join(command[:4])}` does not read"
                )
    return problems


def _mount_target(volume: str | Mapping[str, Any]) -> tuple[str, str]:
    if isinstance(volume, Mapping):
        return str(volume.get("source", "")), str(volume["target"])
    parts = volume.split(":")
    return (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])


def check_compose_volumes(
    document: Mapping[str, Any], state_dirs: Mapping[str, str], root: Path
) -> list[str]:
    """Each named volume is declared, each bind-mounted file exists under ``root`` (the Compose file's
    directory), and each service of ``state_dirs`` keeps that directory on a named volume."""
    declared = set(document.get("volumes") or {})
    problems = []
    services = document.get("services", {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, _ = _mount_target(volume)
            if source.startswith((".", "/")):
                if source.startswith(".") and not (root / source).exists():
                    problems.append(f"service {name}: mounts {source}, which does not exist")
            elif source and source not in declared:
                problems.append(f"service {name}: volume {source} is not declared")
    for name, directory in state_dirs.items():
        mounts = [_mount_target(v) for v in services.get(name, {}).get("volumes", [])]
        if not any(s in declared and (directory == t or directory.startswith(t + "/")) for s, t in mounts):
            problems.append(f"service {name}: its state ({directory}) is on no named volume")
    return problems


def check_compose_dependencies(document: Mapping[str, Any]) -> list[str]:
    """Every ``depends_on`` names a service; one that must have finished (a one-shot job) is waited
    for with ``service_completed_successfully``."""
    services = document.get("services", {})
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for other in depends:
            if other not in services:
                problems.append(f"service {name}: depends on {other}, which is not a service")
    return problems


def docker_compose_config(compose_file: Path) -> tuple[bool, str]:
    """``docker compose config`` on the file: (True, '') when it accepts it, (False, why) when it does
    not; raises FileNotFoundError when the command is not installed (it needs no engine)."""
    if shutil.which("docker") is None:
        raise FileNotFoundError("docker is not installed")
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        raise FileNotFoundError("docker has no compose plugin")
    done = subprocess.run(
        ["docker", "compose", "-f", str(compose_file), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0, done.stderr.strip()
