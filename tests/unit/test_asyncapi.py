"""The committed AsyncAPI documents (deploy/asyncapi/) are the ones the code generates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from services.tools.cli.asyncapi_cmd import ASYNCAPI_DIR, differences, expected_files
from services.tools.cli.main import app


def test_the_committed_documents_match_the_code() -> None:
    result = CliRunner().invoke(app, ["asyncapi", "check"])
    assert result.exit_code == 0, result.output


def test_a_drifted_document_fails_the_check_with_a_diff(tmp_path: Path) -> None:
    directory = tmp_path / "asyncapi"
    shutil.copytree(ASYNCAPI_DIR, directory)
    router = directory / "router.json"
    doc = json.loads(router.read_text(encoding="utf-8"))
    doc["info"]["description"] = "written by hand"
    router.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    (directory / "intake.json").unlink()

    result = CliRunner().invoke(app, ["asyncapi", "check", "--dir", str(directory)])
    assert result.exit_code == 1
    assert "written by hand" in result.output and "missing: asyncapi/intake.json" in result.output

    CliRunner().invoke(app, ["asyncapi", "export", "--dir", str(directory)])
    assert differences(directory) == []


def test_every_service_documents_its_topics_with_the_event_models() -> None:
    files = expected_files()
    assert {"intake.json", "router.json", "tracker.json", "connector-land.json"} <= files.keys()
    router = json.loads(files["router.json"])
    messages = router["components"]["messages"]
    # CloudEvents binary content mode: the payload is the event's data, the headers its envelope.
    payloads = {m["payload"]["$ref"].rsplit("/", 1)[-1] for m in messages.values()}
    assert {
        "DossierReceivedData", "HandoffOutcomeData", "HandoffRequestedData", "DossierStatusChangedData"
    } <= payloads  # fmt: skip
    assert "DossierClosedData" in payloads
    schemas = router["components"]["schemas"]
    assert schemas["HandoffRequestedData"]["properties"]["handoff_id"]
    headers = {m["headers"]["$ref"].rsplit("/", 1)[-1] for m in messages.values() if "headers" in m}
    assert "HandoffRequestedHeaders" in headers
    requested = schemas["HandoffRequestedHeaders"]["properties"]
    assert requested["ce_type"]["const"] == "vn.lienthong.handoff.requested"
    assert {"ce_id", "ce_source", "ce_time", "ce_subject", "ce_correlationid"} <= set(requested)
    connector = json.loads(files["connector-land.json"])
    assert {c["address"] for c in connector["channels"].values()} >= {
        "handoff.land.requested",
        "handoff.outcome",
    }
