"""Every HTTP endpoint of intake and of the agency sandboxes, fuzzed in-process (``httpx.ASGITransport``)
with hypothesis: at least 1,000 requests per endpoint — bodies drawn from the endpoint's OpenAPI schema
and then mutated, sample dossiers mutated, XML documents for the tax authority, random JSON and raw
bytes, odd path parameters and query strings. No answer may be a 5xx, and none may take longer than a
per-request deadline. Oversized bodies are refused; XML entity tricks are refused with a 400."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.business_registry.sandbox.app import create_app as business_registry_app
from connectors.civil_status.sandbox.app import create_app as civil_status_app
from connectors.land.sandbox.app import create_app as land_app
from connectors.residence.sandbox.app import create_app as residence_app
from connectors.social_insurance.sandbox.app import create_app as social_insurance_app
from connectors.tax.sandbox import app as tax_module
from connectors.tax.sandbox.app import create_app as tax_app
from schemas.catalog import load_catalog
from schemas.workdays import default_calendar
from services.intake.api import add_routes
from services.intake.intake import Intake
from services.intake.store import IntakeStore
from services.tools.stack.samples import SampleDossiers

EXAMPLES = 1000
REQUEST_DEADLINE_S = 10.0
BIG_BODY = 2 * 1024 * 1024


def intake_app() -> FastAPI:
    app = FastAPI()
    store = IntakeStore(Path(tempfile.mkdtemp(prefix="fuzz-intake-")) / "intake.db")
    add_routes(app, Intake(store, load_catalog(), default_calendar(), "fuzz."), relay=None)
    return app


def _no_callbacks(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": intake_app,
    "land": land_app,
    "tax": lambda: tax_app(callback_transport=httpx.MockTransport(_no_callbacks)),
    "civil_status": civil_status_app,
    "residence": residence_app,
    "social_insurance": social_insurance_app,
    "business_registry": business_registry_app,
}


def endpoints() -> Iterator[tuple[str, str, str]]:
    for name, make in APPS.items():
        for route in make().routes:
            if isinstance(route, APIRoute):
                for method in sorted(route.methods or ()):
                    yield name, method, route.path


ENDPOINTS = sorted(set(endpoints()))

# --- strategies -------------------------------------------------------------------------------

# Kept cheap to draw: generation, not the apps, is most of a fuzz run's time.
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=6,
)


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values mostly of the schema's shape (a fuzzing guide, not a validator)."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth)
    if depth > 5:
        return scalars
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(s, components, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema.get("examples"):
        return st.sampled_from(schema["examples"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return st.fixed_dictionaries(
            {}, optional={k: from_schema(v, components, depth + 1) for k, v in properties.items()}
        ) | st.fixed_dictionaries({k: from_schema(v, components, depth + 1) for k, v in properties.items()})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1), max_size=3)
    if kind == "string":
        if "pattern" in schema:
            try:
                return st.from_regex(schema["pattern"], fullmatch=True) | st.text(max_size=20)
            except Exception:  # a pattern Python's re does not take
                return st.text(max_size=20)
        return st.text(max_size=20) | st.dates().map(str)
    if kind == "integer":
        return st.integers(min_value=-(2**63), max_value=2**64)
    if kind == "number":
        return st.floats(allow_nan=False) | st.integers()
    if kind == "boolean":
        return st.booleans()
    return json_values


@st.composite
def mutated(draw: st.DrawFn, seed: Any) -> Any:
    """The seed document with a few random changes: a value replaced, a key dropped or added."""
    document = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(0, 3))):
        node = document
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
            child = node[draw(st.sampled_from(keys))]  # type: ignore[index]
            if not isinstance(child, dict | list) or not child:
                break
            node = child
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            action = draw(st.sampled_from(["replace", "drop", "add"]))
            if action == "replace":
                node[key] = draw(json_values)
            elif action == "drop":
                del node[key]
            else:
                node[draw(st.text(max_size=10))] = draw(json_values)
    return document


def sample_seeds() -> list[dict[str, Any]]:
    samples = SampleDossiers(11)
    owner = samples.person()
    return [
        samples.marriage(),
        samples.birth(),
        samples.death(),
        samples.land_transfer("TD-10-137", owner, 80.0),
        samples.first_certificate("TD-10-138", owner, 90.0),
    ]


_TAX_SOURCE = Path(tax_module.__file__).read_text(encoding="utf-8")
TAX_ROOTS = sorted(set(re.findall(r'parse_xml\(\w+, "(\w+)"\)', _TAX_SOURCE))) or ["Root"]
TAX_TAGS = sorted(set(re.findall(r'"(\w+(?:/\w+)?)"', _TAX_SOURCE)))[:200]


@st.composite
def tax_xml(draw: st.DrawFn) -> bytes:
    root = draw(st.sampled_from(TAX_ROOTS) | st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True))
    children = draw(
        st.lists(
            st.tuples(st.sampled_from(TAX_TAGS), st.text(max_size=20) | st.integers().map(str)), max_size=12
        )
    )
    parts = []
    for tag, value in children:
        path = tag.split("/")
        escaped = value.replace("&", "&amp;").replace("<", "&lt;")
        parts.append("".join(f"<{p}>" for p in path) + escaped + "".join(f"</{p}>" for p in reversed(path)))
    document = f"<?xml version='1.0' encoding='UTF-8'?><{root}>{''.join(parts)}</{root}>".encode()
    if draw(st.integers(0, 9)) == 0:  # sometimes broken on purpose
        cut = draw(st.integers(0, len(document)))
        document = document[:cut] + draw(st.binary(max_size=20))
    return document


def body_strategy(
    app_name: str, route: APIRoute, openapi: dict[str, Any]
) -> st.SearchStrategy[tuple[str, bytes]]:
    """(content type, body) pairs for one endpoint."""
    components = openapi.get("components", {}).get("schemas", {})
    operation = openapi["paths"].get(route.path, {})
    schemas = [
        content["schema"]
        for op in operation.values()
        for content in op.get("requestBody", {}).get("content", {}).values()
        if "schema" in content
    ]
    json_bodies: list[st.SearchStrategy[Any]] = [json_values]
    for schema in schemas:
        shaped = from_schema(schema, components)
        json_bodies += [shaped, shaped.flatmap(mutated)]
    if app_name == "intake":
        json_bodies += [st.sampled_from(sample_seeds()).flatmap(mutated)]
    as_json = st.one_of(json_bodies).map(lambda v: ("application/json", json.dumps(v).encode()))
    raw = st.tuples(
        st.sampled_from(["application/json", "application/xml", "text/plain"]), st.binary(max_size=200)
    )
    if app_name == "tax":
        return st.one_of(tax_xml().map(lambda b: ("application/xml", b)), as_json, raw)
    return st.one_of(as_json, as_json, raw)


path_values = st.one_of(
    st.text(min_size=1, max_size=30),
    st.from_regex(r"[A-Za-z0-9.-]{1,24}", fullmatch=True),
    st.uuids().map(str),
    st.integers().map(str),
)
queries = st.dictionaries(
    st.sampled_from(["status", "limit", "offset", "q", "agency", "x"]), st.text(max_size=20), max_size=3
)


@pytest.mark.parametrize(
    ("app_name", "method", "path"), ENDPOINTS, ids=[f"{a}:{m}:{p}" for a, m, p in ENDPOINTS]
)
def test_no_request_gets_a_5xx_or_hangs(app_name: str, method: str, path: str) -> None:
    app = APPS[app_name]()
    route = next(
        r for r in app.routes if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ())
    )
    bodies = body_strategy(app_name, route, app.openapi())
    names = re.findall(r"{(\w+)}", path)
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz.test")
    seen: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        params=st.fixed_dictionaries({n: path_values for n in names}),
        query=queries,
        body=bodies if method in {"POST", "PUT", "PATCH"} else st.just(("application/json", b"")),
        key=st.text(min_size=1, max_size=20, alphabet=st.characters(min_codepoint=33, max_codepoint=126)),
    )
    def one_request(params: dict[str, str], query: dict[str, str], body: tuple[str, bytes], key: str) -> None:
        url = path
        for name, value in params.items():
            url = url.replace("{" + name + "}", quote(value, safe=""))
        content_type, content = body
        headers = {"Content-Type": content_type, "Idempotency-Key": key}
        request = client.request(
            method,
            url,
            params=query,
            headers=headers,
            content=content if method in {"POST", "PUT", "PATCH"} else None,
        )
        try:
            answer = loop.run_until_complete(asyncio.wait_for(request, REQUEST_DEADLINE_S))
        except TimeoutError:
            pytest.fail(f"{method} {url} did not answer within {REQUEST_DEADLINE_S} s")
        seen.append(answer.status_code)
        assert answer.status_code < 500, (method, url, content[:300], answer.text[:300])

    try:
        one_request()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    assert len(seen) >= EXAMPLES, f"only {len(seen)} requests were made"


POST_ENDPOINTS = [e for e in ENDPOINTS if e[1] == "POST"]


@pytest.mark.parametrize(
    ("app_name", "method", "path"), POST_ENDPOINTS, ids=[f"{a}:{p}" for a, _, p in POST_ENDPOINTS]
)
async def test_an_oversized_body_is_refused_without_a_5xx(app_name: str, method: str, path: str) -> None:
    app = APPS[app_name]()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz.test") as http:
        body = json.dumps({"padding": "x" * BIG_BODY}).encode()
        answer = await asyncio.wait_for(
            http.post(
                path, content=body, headers={"Content-Type": "application/json", "Idempotency-Key": "big"}
            ),
            REQUEST_DEADLINE_S,
        )
    assert 400 <= answer.status_code < 500, answer.status_code
    if app_name == "intake":
        assert answer.status_code == 413


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<PhieuChuyenThongTin><SoPhieu>&lol4;</SoPhieu></PhieuChuyenThongTin>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<PhieuChuyenThongTin><SoPhieu>&xxe;</SoPhieu></PhieuChuyenThongTin>"""


@pytest.mark.parametrize(
    "payload", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion_laughs", "external_entity"]
)
@pytest.mark.parametrize("path", [p for a, m, p in POST_ENDPOINTS if a == "tax"])
async def test_xml_entity_tricks_are_a_400(path: str, payload: bytes) -> None:
    app = APPS["tax"]()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz.test") as http:
        answer = await http.post(
            path, content=payload, headers={"Content-Type": "application/xml", "Idempotency-Key": "bomb"}
        )
    assert answer.status_code == 400, answer.text
    assert "root:" not in answer.text and "lollol" not in answer.text
