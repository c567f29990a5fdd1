"""The deployment artefacts in deploy/, checked statically (no Docker engine or cluster runs here):
Docker Compose, the Kubernetes manifests (kustomize) and the image definition reference only modules,
files, ports and endpoints that exist, and every service and agency is present in each."""

from __future__ import annotations

import importlib.util
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from schemas.agencies import Agency
from services.runtime.shell.settings import KafkaSettings
from services.tools.deploy.checks import kustomize_build
from services.tools.deploy.components import dns_name
from services.tools.deploy.secrets import supplied_secrets
from services.tools.stack.stack import StackPorts, agency_url_variable
from services.tracker.app import TrackerSettings, staff_access

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PORTS = StackPorts.fixed(tuple(Agency))
SERVICES = {"intake": PORTS.intake, "router": PORTS.router, "tracker": PORTS.tracker}
CONNECTORS = {f"connector-{a.value}": PORTS.connectors[a] for a in Agency}
SANDBOXES = {f"sandbox-{a.value}": PORTS.sandboxes[a] for a in Agency}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def python_module(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- Docker Compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = load(DEPLOY / "docker-compose.yml")
    assert isinstance(document, dict)
    return document["services"]  # type: ignore[no-any-return]


def test_compose_runs_kafka_in_kraft_mode_with_the_apache_image(compose: dict[str, Any]) -> None:
    kafka = compose["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"] and env["CLUSTER_ID"]
    assert "ZOOKEEPER" not in " ".join(env).upper()
    pom_version = re.search(r"<kafka.version>([^<]+)<", (DEPLOY / "kafka" / "pom.xml").read_text())
    assert pom_version and kafka["image"] == f"apache/kafka:{pom_version.group(1)}", "same Kafka as locally"


def test_compose_has_every_service_agency_and_sandbox_on_the_documented_ports(
    compose: dict[str, Any],
) -> None:
    for name, port in {**SERVICES, **CONNECTORS, **SANDBOXES}.items():
        assert dns_name(name) in compose, f"{dns_name(name)} missing from docker-compose.yml"
        assert f"{port}:{port}" in compose[dns_name(name)]["ports"], name
    for name, port in {**SERVICES, **CONNECTORS}.items():
        env = compose[dns_name(name)]["environment"]
        assert env["LIENTHONG_PORT"] == str(port) and env["LIENTHONG_HOST"] == "0.0.0.0", name
        assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka", name
    for agency in Agency:
        connector = compose[dns_name(f"connector-{agency.value}")]
        assert connector["environment"]["LIENTHONG_AGENCY"] == agency.value
        url = connector["environment"][agency_url_variable(agency)]
        sandbox_url = f"http://{dns_name(f'sandbox-{agency.value}')}:{PORTS.sandboxes[agency]}"
        assert url == f"${{{agency_url_variable(agency)}:-{sandbox_url}}}", "the sandbox unless set"
        sandbox = compose[dns_name(f"sandbox-{agency.value}")]["command"]
        assert sandbox[sandbox.index("--port") + 1] == str(PORTS.sandboxes[agency])
        assert sandbox[sandbox.index("--host") + 1] == "0.0.0.0"


def test_compose_commands_are_modules_that_exist(compose: dict[str, Any]) -> None:
    ours = {name: s for name, s in compose.items() if s.get("image", "").startswith("lienthong")}
    jobs = {"keys", "topics", "migrate"}
    assert len(ours) == len(SERVICES) + len(CONNECTORS) + len(SANDBOXES) + len(jobs)
    processes = {dns_name(name): name for name in {**SERVICES, **CONNECTORS, **SANDBOXES}}
    for name, service in ours.items():
        module = python_module(service["command"])
        assert importable(module), f"{name}: python -m {module} is not importable"
        process = processes.get(name, name)
        if process in SERVICES:
            assert module == f"services.{process}"
        elif process in CONNECTORS:
            assert module == "services.connector"
        elif process in SANDBOXES:
            assert module == f"connectors.{process.removeprefix('sandbox-')}.sandbox"
        else:
            assert process in jobs and module == "services.tools.cli"
    topics = ours["topics"]["command"]
    assert topics[3:5] == ["topics", "create"]
    built = [s["build"] for s in compose.values() if "build" in s]
    assert built and all((DEPLOY / b["context"] / b["dockerfile"]).is_file() for b in built)


def test_compose_mounts_only_files_that_exist(compose: dict[str, Any]) -> None:
    mounts = [v.split(":")[0] for s in compose.values() for v in s.get("volumes", []) if v.startswith(".")]
    assert mounts
    for source in mounts:
        assert (DEPLOY / source).exists(), f"docker-compose.yml mounts {source}, which does not exist"
    prometheus = " ".join(compose["prometheus"]["volumes"])
    assert "./prometheus/rules:" in prometheus
    grafana = " ".join(compose["grafana"]["volumes"])
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/lienthong" in grafana
    provider = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "lienthong.yml")
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/lienthong"


def test_compose_prometheus_scrapes_every_service_by_its_compose_name(compose: dict[str, Any]) -> None:
    config = load(DEPLOY / "compose" / "prometheus.yml")
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name, port in {**SERVICES, **CONNECTORS}.items():
        assert f"{dns_name(name)}:{port}" in targets
        assert dns_name(name) in compose
    local = load(DEPLOY / "prometheus" / "prometheus.yml")
    assert {j["job_name"] for j in config["scrape_configs"]} == {
        j["job_name"] for j in local["scrape_configs"]
    }
    datasource = load(DEPLOY / "compose" / "grafana-datasource.yml")["datasources"][0]
    assert datasource["uid"] == "prometheus" and datasource["url"] == "http://prometheus:9090"


def test_the_image_is_python_3_11_slim_and_installs_the_project() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert "pip install ." in dockerfile
    for copied in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for source in copied.split():
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    cmd = re.search(r'^CMD \["python", "-m", "([^"]+)"\]', dockerfile, re.M)
    assert cmd and importable(cmd.group(1))


# --- Kubernetes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """The objects `kubectl kustomize deploy/k8s` renders (the base with every production component),
    and the sandboxes of the testing-only overlay (overlays/local-testing)."""
    testing = kustomize_build(K8S / "overlays" / "local-testing")
    return kustomize_build(K8S) + [m for m in testing if m["metadata"]["name"].startswith("sandbox-")]


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from deployment["spec"]["template"]["spec"]["containers"]


def test_every_manifest_names_its_kind_once_in_the_namespace(manifests: list[dict[str, Any]]) -> None:
    assert all({"apiVersion", "kind", "metadata"} <= set(m) for m in manifests)
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(names) == len(set(names)), "no manifest defined twice"
    assert all(m["metadata"].get("namespace") == "lienthong" for m in manifests if m["kind"] != "Namespace")


def test_a_deployment_and_a_service_per_service_connector_and_sandbox(
    manifests: list[dict[str, Any]],
) -> None:
    deployments, services = of_kind(manifests, "Deployment"), of_kind(manifests, "Service")
    expected = {dns_name(name): port for name, port in {**SERVICES, **CONNECTORS, **SANDBOXES}.items()}
    assert set(deployments) == set(expected)
    assert set(services) == set(expected)
    for name, port in expected.items():
        (container,) = containers(deployments[name])
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        command = [*container["command"], *container.get("args", [])]
        assert importable(python_module(command))
        if name.startswith("sandbox-"):
            assert command[command.index("--port") + 1] == str(port)
        else:
            assert env["LIENTHONG_PORT"] == str(port)
        assert {"requests", "limits"} <= set(container["resources"])
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployments[name]["spec"]["template"]["metadata"]["labels"].items()
        assert services[name]["spec"]["selector"] == selector
    for agency in Agency:
        (container,) = containers(deployments[dns_name(f"connector-{agency.value}")])
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["LIENTHONG_AGENCY"] == agency.value, "the agency id itself, never its DNS form"


def test_services_are_servicemonitor_ready_with_a_metrics_port(manifests: list[dict[str, Any]]) -> None:
    (monitor,) = of_kind(manifests, "ServiceMonitor").values()
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    services = of_kind(manifests, "Service")
    for name in {**SERVICES, **CONNECTORS}:
        labels = services[dns_name(name)]["metadata"]["labels"]
        assert wanted.items() <= labels.items(), name
        assert "app.kubernetes.io/name" in labels
        metrics = [p for p in services[dns_name(name)]["spec"]["ports"] if p["name"] == "metrics"]
        assert metrics and metrics[0]["targetPort"] == "http", name


def test_the_catalog_configmap_is_the_shipped_catalog_and_is_mounted(manifests: list[dict[str, Any]]) -> None:
    config_maps = of_kind(manifests, "ConfigMap")
    catalog = config_maps["lienthong-catalog"]
    shipped = (ROOT / "schemas" / "data" / "procedures.yaml").read_text(encoding="utf-8")
    assert catalog["data"]["procedures.yaml"] == shipped
    deployments = of_kind(manifests, "Deployment")
    path = config_maps["lienthong-service"]["data"]["LIENTHONG_CATALOG_PATH"]
    for name in {**SERVICES, **CONNECTORS}:
        (container,) = containers(deployments[dns_name(name)])
        assert {"configMapRef": {"name": "lienthong-service"}} in container["envFrom"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "catalog")
        assert path == f"{mount['mountPath']}/procedures.yaml"


def _resolved_env(container: dict[str, Any], config_maps: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A container's env as the pod sees it: values, and ConfigMap keys looked up (Secrets left out)."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env |= config_maps[ref["configMapRef"]["name"]]["data"]
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
    return env


def test_the_deployed_tracker_signs_staff_in_and_intake_checks_client_tokens(
    manifests: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both get the identity provider's issuer (the operator's to set), the tracker an https address
    and the session secret every replica shares, intake the client map: the tracker starts with sign-in
    on instead of refusing, and nothing turns sign-in off."""
    config_maps = of_kind(manifests, "ConfigMap")
    deployments = of_kind(manifests, "Deployment")
    (tracker,) = containers(deployments["tracker"])
    env = _resolved_env(tracker, config_maps)
    assert env.get("LIENTHONG_STAFF_SIGN_IN", "on") == "on" and "LIENTHONG_INSECURE_DEV" not in env
    session_mount = next(
        m for m in tracker["volumeMounts"] if env["LIENTHONG_SESSION_SECRET_FILE"].startswith(m["mountPath"])
    )
    session_volume = next(
        v
        for v in deployments["tracker"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == session_mount["name"]
    )
    assert session_volume["secret"]["secretName"] in supplied_secrets()
    secret_file = tmp_path / "session.secret"
    secret_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    for name, value in (env | {"LIENTHONG_SESSION_SECRET_FILE": str(secret_file)}).items():
        monkeypatch.setenv(name, value)
    config = staff_access(TrackerSettings()).config  # raises SignInNotConfigured where it would not start
    assert config is not None and config.secure_cookie and config.issuer.startswith("https://")

    (intake,) = containers(deployments["intake"])
    intake_env = _resolved_env(intake, config_maps)
    assert intake_env["LIENTHONG_OIDC_ISSUER"] == env["LIENTHONG_OIDC_ISSUER"]
    clients_mount = next(
        m
        for m in intake["volumeMounts"]
        if intake_env["LIENTHONG_OIDC_CLIENTS_FILE"].startswith(m["mountPath"])
    )
    clients_volume = next(
        v
        for v in deployments["intake"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == clients_mount["name"]
    )
    shipped = (DEPLOY / "oidc" / "clients.yaml").read_text(encoding="utf-8")
    assert config_maps[clients_volume["configMap"]["name"]]["data"]["clients.yaml"] == shipped


def test_each_process_connects_as_its_own_principal_and_signs_with_its_own_key(
    manifests: list[dict[str, Any]],
) -> None:
    """The credentials are under the names KafkaSettings reads (LIENTHONG_SASL_*), one Secret per
    principal; each process mounts its own signing key and the shared trust store."""
    read = {f"LIENTHONG_{name.upper()}" for name in KafkaSettings.model_fields}
    supplied = supplied_secrets()
    kafka = of_kind(manifests, "ConfigMap")["lienthong-kafka"]["data"]
    assert (
        kafka["LIENTHONG_SECURITY_PROTOCOL"] == "SASL_SSL"
        and set(kafka) - {"KAFKA_BOOTSTRAP_SERVERS"} <= read
    )
    deployments = of_kind(manifests, "Deployment")
    principals, keys = set(), set()
    for name in {**SERVICES, **CONNECTORS}:
        (container,) = containers(deployments[dns_name(name)])
        secret_refs = [r["secretRef"]["name"] for r in container["envFrom"] if "secretRef" in r]
        (principal_secret,) = secret_refs
        credentials = {"LIENTHONG_SASL_USERNAME", "LIENTHONG_SASL_PASSWORD"}
        assert supplied[principal_secret].keys == frozenset(credentials) and credentials <= read
        principals.add(principal_secret)
        volumes = {v["name"]: v for v in deployments[dns_name(name)]["spec"]["template"]["spec"]["volumes"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        signing = volumes["signing-key"]["secret"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "signing-key")
        assert env["LIENTHONG_SIGNING_KEY"] == f"{mount['mountPath']}/{signing['items'][0]['path']}"
        keys.add(signing["secretName"])
        assert volumes["trust-store"]["secret"]["secretName"] == "lienthong-trust-store"
    assert len(principals) == len(keys) == len(SERVICES) + len(CONNECTORS), "one of each per process"
    assert not of_kind(manifests, "Secret"), "no credential in the manifests: lienthong keys k8s-secrets"


def _answers(app: FastAPI, path: str) -> bool:
    """The app serves ``path`` (asked without starting its lifespan: no broker is needed)."""
    status: int = TestClient(app).get(path).status_code
    return status != 404


def _service_apps(tmp_path: Path) -> dict[str, FastAPI]:
    from services.connector.app import build_app as connector_app
    from services.connector.settings import ConnectorSettings
    from services.intake.app import IntakeSettings
    from services.intake.app import build_app as intake_app
    from services.router.app import RouterSettings
    from services.router.app import build_app as router_app
    from services.tracker.app import TrackerSettings
    from services.tracker.app import build_app as tracker_app

    kafka = "127.0.0.1:1"
    apps = {
        "intake": intake_app(IntakeSettings(data_dir=tmp_path / "intake", bootstrap_servers=kafka)),
        "router": router_app(RouterSettings(data_dir=tmp_path / "router", bootstrap_servers=kafka)),
        "tracker": tracker_app(
            TrackerSettings(data_dir=tmp_path / "tracker", bootstrap_servers=kafka, staff_sign_in="off")
        ),
    }
    for agency in Agency:
        settings = ConnectorSettings(agency=agency, data_dir=tmp_path / agency.value, bootstrap_servers=kafka)
        apps[f"connector-{agency.value}"] = connector_app(settings)
    for agency in Agency:
        module = importlib.import_module(f"connectors.{agency.value}.sandbox.app")
        apps[f"sandbox-{agency.value}"] = module.create_app(":memory:")
    return {dns_name(name): app for name, app in apps.items()}


def test_probes_point_at_endpoints_the_apps_really_serve(
    manifests: list[dict[str, Any]], compose: dict[str, Any], tmp_path: Path
) -> None:
    apps = _service_apps(tmp_path)
    deployments = of_kind(manifests, "Deployment")
    assert set(apps) == set(deployments)
    for name, deployment in deployments.items():
        (container,) = containers(deployment)
        for probe in ("livenessProbe", "readinessProbe"):
            check = container[probe]["httpGet"]
            assert check["port"] == "http"
            assert _answers(apps[name], check["path"]), f"{name}'s {probe} asks {check['path']}: not served"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        if not name.startswith("sandbox-"):
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert all(_answers(apps[name], path) for path in ("/health", "/ready", "/metrics"))
    for name, service in compose.items():
        test = service.get("healthcheck", {}).get("test", [])
        for url in re.findall(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(test)):
            assert _answers(apps[name], url[1])
            ports = {dns_name(n): p for n, p in {**SERVICES, **CONNECTORS, **SANDBOXES}.items()}
            assert int(url[0]) == ports[name]
    assert _answers(apps["tracker"], "/giam-sat"), "the supervision page is served by the tracker"
