"""The deployment checked offline, as CI can (no cluster, no Docker engine, no broker): the kustomize
builds render; every object validates (Kubernetes API schemas, the custom resources' fields); every
variable a manifest sets is read by the process it configures; every Secret and ConfigMap key used
exists; every command is a module; no state is on an emptyDir. The Compose file gets the same checks.

Each check is a function of services/tools/deploy/checks.py returning its problems: empty for the
committed manifests, and the one problem for a copy broken on purpose.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV
from services.tools.cli.main import app as cli
from services.tools.deploy import checks, compose, k8s
from services.tools.deploy.components import TOPICS_ADMIN, bus_components, components, dns_name, is_dns_label
from services.tools.deploy.envfile import read_env_file
from services.tools.deploy.generated import ROOT, stale_files
from services.tools.deploy.secrets import (
    DATABASE_SECRET,
    KAFKA_CA_SECRET,
    SASL_PASSWORD,
    SASL_USERNAME,
    supplied_secrets,
    write_compose_secrets,
)
from services.tools.localkafka.access import service_acls

K8S = ROOT / "deploy" / "k8s"
BUILDS = {
    "all": K8S,
    "single-node": K8S / "overlays" / "single-node",
    "external": K8S / "overlays" / "external",
    "local-testing": K8S / "overlays" / "local-testing",
}
PRODUCTION_BUILDS = ("all", "single-node", "external")
Objects = list[dict[str, Any]]

_rendered: dict[str, Objects] = {}


def rendered(build: str) -> Objects:
    """A deep copy of the objects a build renders (rendered once per test session)."""
    if build not in _rendered:
        _rendered[build] = checks.kustomize_build(BUILDS[build])
    return copy.deepcopy(_rendered[build])


def find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    spec = checks.pod_spec(find(objects, kind, name))
    assert spec is not None
    return spec["containers"][0]  # type: ignore[no-any-return]


def test_the_generated_files_are_what_the_generators_give() -> None:
    assert stale_files(ROOT) == []


# --- Kubernetes: the committed manifests --------------------------------------------------------


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_build_renders_and_passes_every_check(build: str) -> None:
    objects = rendered(build)
    assert objects
    assert checks.check_kubernetes(objects, supplied_secrets()) == []


@pytest.mark.parametrize("build", PRODUCTION_BUILDS)
def test_no_production_build_has_a_sandbox_and_none_gives_a_fault_token(build: str) -> None:
    """The sandboxes (and their fault endpoints) are opt-in: overlays/local-testing only; even there
    no container gets the admin token, so no sandbox serves its fault endpoints."""
    objects = rendered(build)
    sandboxes = {c.object_name for c in components() if c.kind == "sandbox"}
    assert not [f"{o['kind']}/{o['metadata']['name']}" for o in objects if o["metadata"]["name"] in sandboxes]
    assert {o["metadata"]["name"] for o in rendered("local-testing")} >= sandboxes
    for objs in (objects, rendered("local-testing")):
        for obj in objs:
            for container in (checks.pod_spec(obj) or {}).get("containers", []):
                assert ADMIN_TOKEN_ENV not in {e["name"] for e in container.get("env", [])}, obj


def test_compose_starts_the_sandboxes_only_in_their_profile_without_a_fault_token(
    compose_document: dict[str, Any],
) -> None:
    for name, service in compose_document["services"].items():
        assert ADMIN_TOKEN_ENV not in (service.get("environment") or {}), name
        if name.startswith("sandbox-"):
            assert service["profiles"] == [compose.SANDBOX_PROFILE], name


def test_every_service_runs_twice_never_drops_below_and_spreads() -> None:
    objects = rendered("all")
    for component in bus_components():
        deployment = find(objects, "Deployment", component.object_name)
        spec = deployment["spec"]
        assert spec["replicas"] == 2
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        spread = spec["template"]["spec"]["topologySpreadConstraints"]
        assert {s["topologyKey"] for s in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        budget = find(objects, "PodDisruptionBudget", component.object_name)
        assert budget["spec"]["selector"] == spec["selector"] and budget["spec"]["maxUnavailable"] == 1
        env = {e["name"]: e for e in container(objects, "Deployment", component.object_name)["env"]}
        assert env["LIENTHONG_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == DATABASE_SECRET


def test_the_jobs_create_replicated_topics_and_migrate_the_database() -> None:
    def args(objects: Objects) -> list[str]:
        return checks.argv(container(objects, "Job", "lienthong-topics"))

    full = args(rendered("all"))
    assert full[3:5] == ["topics", "create"]
    assert full[full.index("--replication-factor") + 1] == "3"
    assert full[full.index("--min-insync-replicas") + 1] == "2"
    small = args(rendered("single-node"))
    assert small[small.index("--replication-factor") + 1] == "1"
    assert small[small.index("--min-insync-replicas") + 1] == "1"
    assert checks.argv(container(rendered("all"), "Job", "lienthong-migrate"))[3:] == ["db", "migrate"]


def test_the_single_node_overlay_runs_one_of_each() -> None:
    objects = rendered("single-node")
    for component in bus_components():
        assert find(objects, "Deployment", component.object_name)["spec"]["replicas"] == 1
    database = find(objects, "Cluster", k8s.DATABASE_CLUSTER)["spec"]
    assert database["instances"] == 1 and "postgresql" not in database, "no synchronous standby to wait for"


def test_the_external_overlay_has_no_operator_resources() -> None:
    kinds = {o["kind"] for o in rendered("external")}
    assert not kinds & {"Cluster", "KafkaUser", "ServiceMonitor", "PrometheusRule"}


def test_the_kafka_users_carry_the_acls_access_py_declares() -> None:
    users = {o["metadata"]["name"]: o for o in rendered("all") if o["kind"] == "KafkaUser"}
    declared = service_acls()
    assert set(users) == {dns_name(p) for p in [*declared, TOPICS_ADMIN]}
    for principal, acls in declared.items():
        user = users[dns_name(principal)]
        assert user["spec"]["authorization"]["acls"] == k8s.strimzi_acls(acls)
        topics = {
            (a["resource"].get("name"), op)
            for a in user["spec"]["authorization"]["acls"]
            for op in a["operations"]
        }
        for acl in acls:
            assert (acl.name, acl.operation.title()) in topics  # topic names keep the agency id
        password = user["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
        assert password["key"] == SASL_PASSWORD and password["name"] in supplied_secrets()


def test_the_servicemonitor_yields_the_jobs_the_alerts_select() -> None:
    objects = rendered("all")
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        o for o in objects if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()
    ]
    jobs = {s["metadata"]["labels"][monitor["spec"]["jobLabel"]] for s in services}
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "lienthong.rules.yml").read_text())
    service_down = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ServiceDown")
    selected = re.search(r'job=~"([^"]+)"', service_down["expr"])
    assert selected and all(re.fullmatch(selected.group(1), job) for job in jobs)
    local = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert jobs == {j["job_name"] for j in local["scrape_configs"]} - {"prometheus"}, (
        "the same jobs everywhere"
    )
    assert len(services) == len(bus_components())
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == rules["groups"], "the alert rules are deploy/prometheus/rules"


def test_keys_k8s_secrets_writes_every_secret_it_is_declared_to_supply(tmp_path: Path) -> None:
    out, private, trust = tmp_path / "secrets", tmp_path / "private", tmp_path / "trust"
    arguments = [
        "keys",
        "k8s-secrets",
        "--out",
        str(out),
        "--private-dir",
        str(private),
        "--trust-store",
        str(trust),
    ]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    written = checks.kustomize_build(out)
    by_keys = {n: s for n, s in supplied_secrets().items() if s.by.startswith("lienthong keys")}
    assert {o["metadata"]["name"] for o in written} == set(by_keys)
    assert all((out / f).stat().st_mode & 0o077 == 0 for f in [p.name for p in out.iterdir()]), "owner only"
    # With them, only the operators' Secrets (database, Kafka CA) are left to be supplied.
    operators = {n: s for n, s in supplied_secrets().items() if n in (DATABASE_SECRET, KAFKA_CA_SECRET)}
    assert checks.check_references(rendered("all") + written, operators) == []
    for document in written:
        if SASL_USERNAME in document.get("stringData", {}):
            assert is_dns_label(document["stringData"][SASL_USERNAME])
    trust_store = next(o for o in written if o["metadata"]["name"] == "lienthong-trust-store")
    assert len(trust_store["data"]) == len(bus_components()) + 1, "a key per producer, and the dlq tool's"
    again = CliRunner().invoke(cli, arguments)
    assert again.exit_code == 0
    assert checks.kustomize_build(out) == written, "writing again changes no key and no password"


# --- Kubernetes: each check fails on a broken manifest -------------------------------------------


def test_an_underscore_name_is_reported() -> None:
    objects = rendered("all")
    find(objects, "Service", "connector-civil-status")["metadata"]["name"] = "connector-civil_status"
    assert checks.check_names(objects) == ["Service/connector-civil_status: the name is not a DNS-1123 label"]


def test_an_underscore_name_in_a_copied_deploy_dir_is_reported(tmp_path: Path) -> None:
    """End to end: the copy of deploy/k8s with one name broken renders, and the check names it."""
    shutil.copytree(K8S, tmp_path / "k8s")
    intake = tmp_path / "k8s" / "base" / "intake.yaml"
    intake.write_text(intake.read_text().replace("name: intake\n", "name: in_take\n", 1))
    problems = checks.check_names(checks.kustomize_build(tmp_path / "k8s"))
    assert problems == ["Deployment/in_take: the name is not a DNS-1123 subdomain"]


def test_an_unread_env_var_is_reported() -> None:
    objects = rendered("all")
    intake = container(objects, "Deployment", "intake")
    intake["env"].append({"name": "KAFKA_SASL_USERNAME", "value": "intake"})  # the old, unread name
    assert checks.check_env(objects, supplied_secrets()) == [
        "Deployment/intake: sets KAFKA_SASL_USERNAME, which `python -m services.intake` does not read"
    ]


def test_a_variable_of_another_agency_is_reported() -> None:
    objects = rendered("all")
    land = container(objects, "Deployment", "connector-land")
    land["env"].append({"name": "LIENTHONG_TAX_URL", "value": "http://sandbox-tax:8201"})
    assert checks.check_env(objects, supplied_secrets()) == [
        "Deployment/connector-land: sets LIENTHONG_TAX_URL,"
        " which `python -m services.connector` does not read"
    ]


def test_an_emptydir_on_data_is_reported() -> None:
    objects = rendered("all")
    router = find(objects, "Deployment", "router")["spec"]["template"]["spec"]
    router["volumes"].append({"name": "data", "emptyDir": {}})
    router["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/data"})
    assert checks.check_state_volumes(objects) == [
        "Deployment/router: /data is on emptyDir data, which dies with its pod"
    ]


def test_a_missing_secret_or_configmap_key_is_reported() -> None:
    objects = rendered("all")
    tracker = container(objects, "Deployment", "tracker")
    database = next(e for e in tracker["env"] if e["name"] == "LIENTHONG_DATABASE_URL")
    database["valueFrom"]["secretKeyRef"]["key"] = "url"
    land = container(objects, "Deployment", "connector-land")
    url = next(e for e in land["env"] if e["name"] == "LIENTHONG_LAND_URL")
    url["valueFrom"]["configMapKeyRef"]["name"] = "lienthong-agency"
    assert checks.check_references(objects, supplied_secrets()) == [
        "Deployment/connector-land: ConfigMap lienthong-agency is not rendered",
        f"Deployment/tracker: Secret {DATABASE_SECRET} has no key url",
    ]
    del find(objects, "ConfigMap", "lienthong-agencies")["data"]["LIENTHONG_TAX_URL"]
    assert "Deployment/connector-tax: ConfigMap lienthong-agencies has no key LIENTHONG_TAX_URL" in (
        checks.check_references(objects, supplied_secrets())
    )


def test_an_undeclared_secret_is_reported() -> None:
    objects = rendered("all")
    intake = container(objects, "Deployment", "intake")
    intake["envFrom"].append({"secretRef": {"name": "lienthong-kafka"}})
    assert checks.check_references(objects, supplied_secrets()) == [
        "Deployment/intake: Secret lienthong-kafka is neither rendered nor declared as supplied"
    ]


def test_a_command_that_is_no_module_is_reported() -> None:
    objects = rendered("all")
    container(objects, "Deployment", "intake")["command"] = ["python", "-m", "services.intakee"]
    container(objects, "Job", "lienthong-migrate")["command"] = ["lienthong"]
    assert checks.check_commands(objects) == [
        "Deployment/intake: `python -m services.intakee`: no such module",
        "Job/lienthong-migrate: ['lienthong', 'db', 'migrate'] is not `python -m <module>`",
    ]


def test_an_object_against_its_schema_is_reported() -> None:
    objects = rendered("all")
    find(objects, "Deployment", "intake")["spec"]["replica"] = 2  # misspelt: strict validation
    user = find(objects, "KafkaUser", "intake")
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Publish"]
    problems = checks.check_schemas(objects)
    assert len(problems) == 2
    assert problems[0].startswith("Deployment/intake: spec: ") and "'replica'" in problems[0]
    assert problems[1].startswith("KafkaUser/intake: spec/authorization/acls/0/operations/0: 'Publish'")


# --- Docker Compose -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_document() -> dict[str, Any]:
    return yaml.safe_load((ROOT / compose.COMPOSE_FILE).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def env_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The keys of each credentials file the `keys` job writes, by its path in the containers."""
    out = tmp_path_factory.mktemp("secrets")
    write_compose_secrets(out)
    return {
        f"{compose.SECRETS_DIR}/{p.relative_to(out)}": sorted(read_env_file(p))
        for p in (out / "env").glob("*.env")
    }


def state_dirs(document: dict[str, Any]) -> dict[str, str]:
    services = document["services"]
    return {
        "kafka": services["kafka"]["environment"]["KAFKA_LOG_DIRS"],
        "postgres": services["postgres"]["environment"]["PGDATA"],
    }


def compose_problems(document: dict[str, Any], env_files: dict[str, list[str]]) -> list[str]:
    return [
        *checks.check_compose_names(document),
        *checks.check_compose_commands(document),
        *checks.check_compose_env(document, env_files),
        *checks.check_compose_volumes(document, state_dirs(document), ROOT / "deploy"),
        *checks.check_compose_dependencies(document),
    ]


def test_the_compose_file_passes_every_check(
    compose_document: dict[str, Any], env_files: dict[str, list[str]]
) -> None:
    assert compose_problems(compose_document, env_files) == []


def test_compose_keeps_kafka_and_postgres_on_their_volumes_and_waits_for_the_one_shot_jobs(
    compose_document: dict[str, Any],
) -> None:
    services = compose_document["services"]
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == compose.KAFKA_LOG_DIR
    for component in bus_components():
        service = services[component.object_name]
        assert service["environment"]["LIENTHONG_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert service["environment"]["LIENTHONG_SIGNING_KEY"].startswith(compose.SECRETS_DIR)
        for job in ("keys", "topics", "migrate"):
            assert service["depends_on"][job] == {"condition": "service_completed_successfully"}
    assert services["keys"]["command"][3:5] == ["keys", "compose-secrets"]


def test_compose_secrets_give_each_process_its_principal_and_keep_what_they_made(tmp_path: Path) -> None:
    write_compose_secrets(tmp_path)
    first = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    write_compose_secrets(tmp_path)
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == first
    users = dict(line.split(" ") for line in (tmp_path / "kafka" / "users").read_text().splitlines())
    assert set(users) == {*service_acls(), TOPICS_ADMIN}
    for principal in service_acls():
        env = read_env_file(tmp_path / "env" / f"{dns_name(principal)}.env")
        assert env[SASL_USERNAME] == principal and env[SASL_PASSWORD] == users[principal]
        assert env["LIENTHONG_DATABASE_URL"].startswith("postgresql://")
    assert len(set(users.values())) == len(users), "a password of its own each"


def test_the_kafka_setup_script_grants_every_declared_acl() -> None:
    script = (ROOT / compose.KAFKA_SETUP).read_text()
    for principal, acls in service_acls().items():
        lines = [line for line in script.splitlines() if f"User:{principal} " in line]
        assert len(lines) == len(acls), principal
    done = subprocess.run(["bash", "-n", str(ROOT / compose.KAFKA_SETUP)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_credentials_launcher_adds_the_file_to_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "intake.env"
    env_file.write_text(
        "# made by the keys job\nLIENTHONG_SASL_USERNAME=intake\nLIENTHONG_SASL_PASSWORD=a=b\n"
    )
    launcher = [sys.executable, "-m", "services.tools.deploy.envfile", str(env_file), "--"]
    printed = subprocess.run(
        [*launcher, sys.executable, "-c", "import os; print(os.environ['LIENTHONG_SASL_PASSWORD'])"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert printed.stdout.strip() == "a=b"
    missing = subprocess.run(
        [sys.executable, "-m", "services.tools.deploy.envfile", str(tmp_path / "none.env"), "--", "true"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert missing.returncode == 1 and "cannot read the credentials" in missing.stderr


def test_a_broken_compose_file_is_reported(
    compose_document: dict[str, Any], env_files: dict[str, list[str]]
) -> None:
    broken = copy.deepcopy(compose_document)
    services = broken["services"]
    services["connector-civil_status"] = services.pop("connector-civil-status")
    services["intake"]["environment"]["KAFKA_SASL_USERNAME"] = "intake"
    services["router"]["command"] = ["python", "-m", "services.routerr"]
    services["kafka"]["volumes"] = [
        v for v in services["kafka"]["volumes"] if not v.startswith("kafka-data:")
    ]
    assert compose_problems(broken, env_files) == [
        "service connector-civil_status: not a DNS-1123 label",
        "service router: `python -m services.routerr`: no such module",
        "service intake: sets KAFKA_SASL_USERNAME, which `python -m services.intake` does not read",
        "service router: no settings models known for python -m services.routerr",
        f"service kafka: its state ({compose.KAFKA_LOG_DIR}) is on no named volume",
    ]


def test_docker_compose_config_accepts_the_file() -> None:
    try:
        accepted, why = checks.docker_compose_config(ROOT / compose.COMPOSE_FILE)
    except FileNotFoundError as missing:
        pytest.skip(f"`docker compose config` cannot run here ({missing}); the static checks above still ran")
    assert accepted, why
