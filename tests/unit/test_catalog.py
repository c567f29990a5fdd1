"""The procedure catalog: the shipped data, the validation messages, and the route helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from schemas.agencies import Agency, is_known_action
from schemas.catalog import FORM_KINDS, Catalog, CatalogError, Procedure, load_catalog, parse_catalog
from services.tools.cli.catalog_cmd import app as catalog_app

BIRTH = "9.900003"
LAND_TRANSFER = "9.900001"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _one_procedure(**overrides: object) -> str:
    """A valid one-procedure catalog as YAML, with fields of the procedure replaced."""
    procedure: dict[str, object] = {
        "code": "1.000000",
        "name_vi": "Chuyển nhượng quyền sử dụng đất",
        "name_en": "Land-use-right transfer",
        "lead_agency": "land",
        "form_kind": "land_transfer",
        "deadline_working_days": 10,
        "route": [
            {"id": "check", "agency": "land", "action": "check_transfer", "share_working_days": 3},
            {
                "id": "tax",
                "agency": "tax",
                "action": "assess_transfer_obligations",
                "after": ["check"],
                "share_working_days": 3,
                "pauses_clock_on_waiting": True,
            },
            {
                "id": "register",
                "agency": "land",
                "action": "register_transfer",
                "after": ["tax"],
                "share_working_days": 4,
            },
        ],
    }
    procedure.update(overrides)
    return yaml.safe_dump({"procedures": [procedure]}, allow_unicode=True)


def _problems(text: str) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    return caught.value.problems


def _route_with(**step_overrides: object) -> list[dict[str, object]]:
    route: list[dict[str, object]] = yaml.safe_load(_one_procedure())["procedures"][0]["route"]
    route[2] = {**route[2], **step_overrides}
    return route


# -- the shipped catalog ------------------------------------------------------------------------


def test_shipped_catalog_has_the_six_procedures_of_the_domain(catalog: Catalog) -> None:
    kinds = sorted(p.form_kind for p in catalog.procedures)
    assert kinds == sorted(FORM_KINDS)
    for procedure in catalog.procedures:
        assert procedure.name_vi and procedure.name_en
        for step in procedure.route:
            assert is_known_action(step.agency, step.action)


def test_land_transfer_waits_on_tax_payment_between_two_land_steps(catalog: Catalog) -> None:
    land = catalog.procedure(LAND_TRANSFER)
    assert [(s.agency, s.action) for s in land.route] == [
        (Agency.LAND, "check_transfer"),
        (Agency.TAX, "assess_transfer_obligations"),
        (Agency.LAND, "register_transfer"),
    ]
    assert [s.pauses_clock_on_waiting for s in land.route] == [False, True, False]
    assert land.deadline_working_days == 10


def test_death_group_uses_the_national_code_from_the_domain(catalog: Catalog) -> None:
    assert catalog.procedure("1.011537").form_kind == "death"


def test_unknown_procedure_code_names_the_known_ones(catalog: Catalog) -> None:
    with pytest.raises(KeyError, match=r"unknown procedure code '1\.234567'.*9\.900001"):
        catalog.procedure("1.234567")


def test_catalog_path_can_point_at_another_file(tmp_path: Path) -> None:
    path = tmp_path / "procedures.yaml"
    path.write_text(_one_procedure(), encoding="utf-8")
    assert [p.code for p in load_catalog(path).procedures] == ["1.000000"]


# -- routes ---------------------------------------------------------------------------------------


def test_birth_route_runs_residence_and_health_card_in_parallel_after_the_birth(catalog: Catalog) -> None:
    birth = catalog.procedure(BIRTH)
    assert [s.id for s in birth.initial_steps()] == ["register_birth"]
    assert birth.ready_steps(done=set(), started={"register_birth"}) == []
    parallel = birth.ready_steps(done={"register_birth"}, started={"register_birth"})
    assert [s.id for s in parallel] == ["register_residence", "issue_health_card"]
    after_one = birth.ready_steps(done={"register_birth"}, started={"register_birth", "register_residence"})
    assert [s.id for s in after_one] == ["issue_health_card"]


def test_birth_completes_without_the_lagging_health_card(catalog: Catalog) -> None:
    birth = catalog.procedure(BIRTH)
    assert not birth.is_complete({"register_birth"})
    assert birth.is_complete({"register_birth", "register_residence"})
    assert not birth.step("issue_health_card").required


def test_sequential_route_offers_one_step_at_a_time(catalog: Catalog) -> None:
    land = catalog.procedure(LAND_TRANSFER)
    assert [s.id for s in land.ready_steps(set(), set())] == ["check_dossier"]
    assert [s.id for s in land.ready_steps({"check_dossier"}, {"check_dossier"})] == ["assess_obligations"]
    assert not land.is_complete({"check_dossier", "assess_obligations"})
    assert land.is_complete({"check_dossier", "assess_obligations", "register_transfer"})


def test_share_offsets_follow_the_longest_chain(catalog: Catalog) -> None:
    assert catalog.procedure(BIRTH).share_offsets() == {
        "register_birth": 1,
        "register_residence": 3,
        "issue_health_card": 3,
    }


def test_unknown_step_id_is_a_clear_key_error(catalog: Catalog) -> None:
    with pytest.raises(KeyError, match="has no step 'nope'"):
        catalog.procedure(BIRTH).step("nope")


# -- validation messages --------------------------------------------------------------------------

LABEL = "procedure 1.000000 (Land-use-right transfer)"


def test_unknown_agency_names_procedure_step_and_value() -> None:
    problems = _problems(_one_procedure(route=_route_with(agency="landd")))
    assert problems == [f"{LABEL}: route[2].agency: unknown agency 'landd' " + _known_agencies()]


def _known_agencies() -> str:
    return "(known: " + ", ".join(a.value for a in Agency) + ")"


def test_action_not_served_by_the_agency() -> None:
    [problem] = _problems(_one_procedure(route=_route_with(agency="tax")))
    assert problem.startswith(f"{LABEL}: route[2].action: 'register_transfer' is not served by agency 'tax'")


def test_unknown_step_in_after() -> None:
    [problem] = _problems(_one_procedure(route=_route_with(after=["taxx"])))
    assert problem.startswith(f"{LABEL}: route[2].after: unknown step 'taxx'")


def test_cycle_names_the_steps_in_it() -> None:
    route = _route_with()
    route[0] = {**route[0], "after": ["register"]}
    assert _problems(_one_procedure(route=route)) == [f"{LABEL}: route: cycle check → tax → register → check"]


def test_shares_longer_than_the_deadline() -> None:
    assert _problems(_one_procedure(deadline_working_days=9)) == [
        f"{LABEL}: route: shares along check → tax → register add up to 10 working days,"
        " more than deadline_working_days 9"
    ]


def test_parallel_shares_count_once() -> None:
    route = _route_with(after=["check"])  # tax and register both after check: longest chain 3 + 4
    assert parse_catalog(_one_procedure(route=route, deadline_working_days=7)).procedures


def test_duplicate_step_ids() -> None:
    [problem] = _problems(_one_procedure(route=_route_with(id="tax", after=["check"])))
    assert problem == f"{LABEL}: route[2].id: duplicate step id 'tax' (also route[1])"


def test_empty_route() -> None:
    assert _problems(_one_procedure(route=[])) == [f"{LABEL}: route: must have at least one step"]


def test_unknown_form_kind() -> None:
    [problem] = _problems(_one_procedure(form_kind="land"))
    assert problem.startswith(f"{LABEL}: form_kind: unknown form kind 'land'")


def test_bad_code_shape_and_missing_field() -> None:
    text = _one_procedure(code="1.00000")
    problems = _problems(text.replace("  name_en: Land-use-right transfer\n", ""))
    assert any("code: String should match pattern" in p for p in problems)
    assert any(p.endswith("name_en: Field required") for p in problems)


def test_required_step_cannot_wait_for_an_optional_one() -> None:
    route = _route_with()
    route[1] = {**route[1], "required": False}
    [problem] = _problems(_one_procedure(route=route))
    assert problem == f"{LABEL}: route[2].after: required step 'register' waits for optional step 'tax'"


def test_duplicate_procedure_codes_even_when_one_is_also_invalid() -> None:
    first = yaml.safe_load(_one_procedure())["procedures"][0]
    second = {**first, "form_kind": "nope"}
    problems = _problems(yaml.safe_dump({"procedures": [first, second]}))
    assert "procedures[1].code: duplicate procedure code '1.000000' (also procedures[0])" in problems
    assert len(problems) == 2


def test_not_yaml_and_wrong_shape_are_one_line_each() -> None:
    [problem] = _problems("procedures: [")
    assert problem.startswith("not valid YAML at line")
    assert _problems("- just a list") == ["the file must be a mapping with a 'procedures' list"]
    assert _problems("procedures: 3") == ["procedures: Input should be a valid list"]


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the file"):
        load_catalog(tmp_path / "absent.yaml")


def test_models_validate_directly_too() -> None:
    data = yaml.safe_load(_one_procedure(lead_agency="landd"))["procedures"][0]
    with pytest.raises(ValueError, match="lead_agency: unknown agency 'landd'"):
        Procedure.model_validate(data)


# -- command line ---------------------------------------------------------------------------------


def test_cli_check_accepts_the_shipped_catalog_and_rejects_a_broken_one(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(catalog_app, ["check"])
    assert ok.exit_code == 0, ok.output
    assert "6 procedures" in ok.output

    broken = tmp_path / "broken.yaml"
    broken.write_text(_one_procedure(form_kind="land"), encoding="utf-8")
    bad = runner.invoke(catalog_app, ["check"], env={"LIENTHONG_CATALOG_PATH": str(broken)})
    assert bad.exit_code == 1
    assert "unknown form kind 'land'" in bad.output


def test_cli_show_lists_routes() -> None:
    result = CliRunner().invoke(catalog_app, ["show"])
    assert result.exit_code == 0
    assert "issue_health_card [social_insurance.issue_child_health_card, 2d, optional]" in result.output
    assert "Đăng ký kết hôn" in result.output
