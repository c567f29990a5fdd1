"""Intake under a generated corpus of hostile input (hypothesis, in process): 1,000 bodies for
``POST /dossiers`` and 1,000 path values for each catalog endpoint.

``test_fuzz_http`` proves no endpoint of the bus answers a 5xx to random requests. This corpus is
aimed at intake and asserts more of each answer: every body starts from a dossier intake accepts and
is made wrong in one way it must refuse — its structure (nesting, types, missing and extra fields, no
object), its encoding (not UTF-8, a byte order mark, UTF-16, unpaired surrogates, a Content-Type
that is not JSON), its characters (control, bidirectional, zero-width, private-use, unassigned), its
sizes, its dates (after today in Vietnam, before any citizen id, malformed) or its numbers (huge,
negative, NaN, fractional money), or its Idempotency-Key. Each answer must be the 4xx that kind of
refusal gets, with a ``detail`` sentence; nothing may reach the outbox (and so Kafka); and no string
the body held may come back in the answer.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalog import load_catalog
from schemas.workdays import default_calendar
from services.intake.api import add_routes
from services.intake.examples import example
from services.intake.intake import Intake
from services.intake.store import IntakeStore
from services.intake.submission import MAX_BODY_BYTES
from services.tools.stack.samples import SampleDossiers

EXAMPLES: Final = 1000
CATALOG: Final = load_catalog()
CODES: Final = [p.code for p in CATALOG.procedures]

Path_ = tuple[str | int, ...]

# --- dossiers intake accepts, to spoil ----------------------------------------------------------

_DOCUMENT: Final = {
    "name": "hop-dong-chuyen-nhuong.pdf",
    "media_type": "application/pdf",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "size_bytes": 482133,
}


def _seeds() -> list[dict[str, Any]]:
    seeds = [found.submission for p in CATALOG.procedures if (found := example(p)) is not None]
    samples = SampleDossiers(11)
    owner = samples.person()
    seeds += [
        samples.marriage(),
        samples.birth(),
        samples.death(),
        samples.household_business(),
        samples.land_transfer("TD-10-137", owner, 80.0),
        samples.first_certificate("TD-10-138", owner, 90.0),
    ]
    for seed in seeds[::2]:
        seed["documents"] = [dict(_DOCUMENT)]
    return seeds


SEEDS: Final = _seeds()

TEXT_FIELDS: Final = frozenset(
    {
        "full_name",
        "address",
        "child_full_name",
        "place_of_birth",
        "residence_address",
        "place_of_death",
        "land_use_purpose",
        "business_name",
        "business_address",
        "line_of_business",
        "name",
    }
)
DATE_FIELDS: Final = frozenset({"date_of_birth", "child_date_of_birth", "date_of_death"})
MONEY_FIELDS: Final = frozenset({"declared_value_vnd", "land_value_vnd", "capital_vnd"})
OPTIONAL_FIELDS: Final = frozenset(
    {"channel", "documents", "sex", "address", "father", "allowance_beneficiary"}
)
NOT_PERSONAL: Final = frozenset({"procedure_code", "channel", "sex", "child_sex", "media_type", "sha256"})


def _walk(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def _paths(document: dict[str, Any], keep: Callable[[Path_, Any], bool]) -> list[Path_]:
    return [path for path, value in _walk(document) if path and keep(path, value)]


def _set(document: dict[str, Any], path: Path_, value: Any) -> None:
    node: Any = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _get(document: dict[str, Any], path: Path_) -> Any:
    node: Any = document
    for part in path:
        node = node[part]
    return node


def _text(path: Path_, value: Any) -> bool:
    return path[-1] in TEXT_FIELDS and isinstance(value, str) and len(value) >= 2


def _strings(document: Any) -> list[str]:
    """The strings a body held that an answer must not repeat (long enough not to occur by chance)."""
    return [
        value
        for path, value in _walk(document)
        if isinstance(value, str) and len(value.strip()) >= 6 and not (path and path[-1] in NOT_PERSONAL)
    ]


def _encoded(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


MARK: Final = "@@hostile@@"


def _spliced(document: dict[str, Any], path: Path_, raw: bytes, *, inside: bool = False) -> bytes:
    """``document`` as JSON with raw bytes at ``path``: the value replaced, or put inside its string."""
    changed = copy.deepcopy(document)
    if inside:
        value = _get(changed, path)
        _set(changed, path, value[: len(value) // 2] + MARK + value[len(value) // 2 :])
        return _encoded(changed).replace(MARK.encode(), raw)
    _set(changed, path, MARK)
    return _encoded(changed).replace(json.dumps(MARK).encode(), raw)


@dataclass(frozen=True)
class Attack:
    family: str
    kind: str
    status: int
    body: bytes
    content_type: str | None = "application/json"
    key: bytes | None = field(default_factory=lambda: uuid.uuid4().hex.encode())
    strings: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()  # numbers the answer must not hold (a year of birth)


def _attack(family: str, kind: str, status: int, body: bytes, *sent: Any, **extra: Any) -> Attack:
    strings = tuple(s for document in sent for s in _strings(document))
    return Attack(family, kind, status, body, strings=strings, **extra)


KINDS: Final = {
    "structure": ["deep", "wrong_type", "missing", "extra", "not_object", "truncated"],
    "encoding": ["not_utf8", "byte_order_mark", "utf16_or_32", "surrogate", "content_type"],
    "characters": ["refused_character"],
    "sizes": ["too_long", "blank", "oversized_body", "many_documents", "many_keys"],
    "dates": ["future", "far_past", "malformed", "not_a_string"],
    "numbers": ["not_json_number", "out_of_range_or_type"],
    "keys": ["no_key"],
}
"""The kinds of hostile input of each family."""

seeds = st.sampled_from(SEEDS).map(copy.deepcopy)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5,
)

# --- structure ----------------------------------------------------------------------------------


def _other_type(value: Any) -> st.SearchStrategy[Any]:
    containers: st.SearchStrategy[Any] = st.lists(st.integers(), max_size=2) | st.just({})
    if isinstance(value, str):
        return st.integers() | st.floats(allow_nan=False) | st.booleans() | containers
    if isinstance(value, bool | int):
        return st.text(max_size=8) | st.just(1.5) | containers
    if isinstance(value, float):
        return st.text(max_size=8) | st.booleans() | containers
    if isinstance(value, dict):
        return st.lists(st.integers(), max_size=2) | st.text(max_size=8) | st.integers()
    if isinstance(value, list):
        return st.just({}) | st.text(max_size=8) | st.integers()
    return st.integers() | st.text(max_size=8)


EXTRA_KEYS: Final = st.sampled_from(
    ["nickname", "citizen_password", "__proto__", "constructor", "$where", "form_kind", "FULL_NAME", ""]
) | st.text(max_size=12).map(lambda t: "x_" + t)


@st.composite
def structure(draw: st.DrawFn) -> Attack:
    seed = draw(seeds)
    kind = draw(st.sampled_from(KINDS["structure"]))
    if kind == "deep":
        depth = draw(st.integers(33, 3000))
        opening, closing = draw(st.sampled_from([(b"[", b"]"), (b'{"a": ', b"}")]))
        nest = opening * depth + b"1" * (opening != b"[") + closing * depth
        if draw(st.booleans()):
            return _attack("structure", kind, 422, nest)
        path = draw(st.sampled_from(_paths(seed, lambda p, v: True)))
        return _attack("structure", kind, 422, _spliced(seed, path, nest), seed)
    if kind == "wrong_type":
        path = draw(st.sampled_from(_paths(seed, lambda p, v: True)))
        _set(seed, path, draw(_other_type(_get(seed, path))))
        return _attack("structure", kind, 422, _encoded(seed), seed)
    if kind == "missing":
        path = draw(
            st.sampled_from(
                _paths(seed, lambda p, v: isinstance(p[-1], str) and p[-1] not in OPTIONAL_FIELDS)
            )
        )
        parent = _get(seed, path[:-1])
        del parent[path[-1]]
        return _attack("structure", kind, 422, _encoded(seed), seed)
    if kind == "extra":
        paths = [(), *_paths(seed, lambda p, v: isinstance(v, dict))]
        node = _get(seed, draw(st.sampled_from(paths)))
        key = draw(EXTRA_KEYS.filter(lambda k: k not in node))
        node[key] = draw(json_values)
        return _attack("structure", kind, 422, _encoded(seed), seed)
    if kind == "not_object":
        document = draw(st.lists(json_values, max_size=3) | scalars)
        return _attack("structure", kind, 422, _encoded(document))
    body = _encoded(seed)
    return _attack("structure", kind, 422, body[: draw(st.integers(0, len(body) - 1))], seed)


# --- encoding -----------------------------------------------------------------------------------

NOT_UTF8: Final = [
    b"\xff",
    b"\xfe",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
]
SURROGATES: Final = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}".encode())
NOT_JSON_TYPES: Final = st.sampled_from(
    [
        None,
        "",
        "text/plain",
        "text/plain; charset=utf-8",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "application/problem+json",
        "application/json; charset=utf-16",
        "application/json; charset=latin-1",
        "application/json; charset=windows-1258",
        "*/*",
    ]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).filter(
    lambda t: t.split(";")[0].strip().lower() != "application/json"
)


@st.composite
def encoding(draw: st.DrawFn) -> Attack:
    seed = draw(seeds)
    kind = draw(st.sampled_from(KINDS["encoding"]))
    text_path = draw(st.sampled_from(_paths(seed, _text)))
    if kind == "not_utf8":
        body = _spliced(seed, text_path, draw(st.sampled_from(NOT_UTF8)), inside=True)
        return _attack("encoding", kind, 422, body, seed)
    if kind == "byte_order_mark":
        return _attack("encoding", kind, 422, b"\xef\xbb\xbf" + _encoded(seed), seed)
    if kind == "utf16_or_32":
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]))
        return _attack("encoding", kind, 422, json.dumps(seed, ensure_ascii=False).encode(codec), seed)
    if kind == "surrogate":
        return _attack("encoding", kind, 422, _spliced(seed, text_path, draw(SURROGATES), inside=True), seed)
    content_type = draw(NOT_JSON_TYPES)
    return _attack("encoding", kind, 415, _encoded(seed), seed, content_type=content_type)


# --- characters ---------------------------------------------------------------------------------

REFUSED_CHARACTERS: Final = st.sampled_from(
    [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]
    + list("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
    + list("\u200b\u200c\u200d\u2060\ufeff\u00ad\u2028\u2029\ue000\uf8ff\U000f0000\u0378\ufffe\uffff")
) | st.characters(categories=["Cc", "Cf", "Co", "Cn", "Zl", "Zp"])


@st.composite
def characters(draw: st.DrawFn) -> Attack:
    seed = draw(seeds)
    path = draw(st.sampled_from(_paths(seed, _text)))
    value = _get(seed, path)
    position = draw(st.integers(1, len(value) - 1))  # inside: a register never sees what trimming drops
    hostile = value[:position] + draw(REFUSED_CHARACTERS) + value[position:]
    _set(seed, path, hostile)
    return _attack("characters", "refused_character", 422, _encoded(seed), seed)


# --- sizes --------------------------------------------------------------------------------------


@st.composite
def sizes(draw: st.DrawFn) -> Attack:
    seed = draw(seeds)
    kind = draw(st.sampled_from(KINDS["sizes"]))
    path = draw(st.sampled_from(_paths(seed, _text)))
    if kind == "too_long":
        _set(seed, path, draw(st.sampled_from("aĂễ")) * draw(st.integers(501, 20_000)))
        return _attack("sizes", kind, 422, _encoded(seed), seed)
    if kind == "blank":
        _set(seed, path, draw(st.sampled_from(["", " ", "   ", "\u3000", "\u00a0 "])))
        return _attack("sizes", kind, 422, _encoded(seed), seed)
    if kind == "oversized_body":
        _set(seed, path, "a" * draw(st.integers(MAX_BODY_BYTES + 1, 2 * MAX_BODY_BYTES)))
        return _attack("sizes", kind, 413, _encoded(seed), seed)
    if kind == "many_documents":
        seed["documents"] = [dict(_DOCUMENT) for _ in range(draw(st.integers(51, 400)))]
        return _attack("sizes", kind, 422, _encoded(seed), seed)
    seed["form"].update({f"x{i}": i for i in range(draw(st.integers(1, 3000)))})
    return _attack("sizes", kind, 422, _encoded(seed), seed)


# --- dates --------------------------------------------------------------------------------------

MALFORMED_DATES: Final = [
    "2024-02-30",
    "2023-02-29",
    "2024-13-01",
    "2024-00-10",
    "14/03/1985",
    "1985/03/14",
    "19850314",
    "",
    "1985-3-14",
    "85-03-14",
    "+1985-03-14",
    "1985-03-14T00:00:00Z",
    "1985-03-14 ",
    "１９８５-03-14",
    "١٩٨٥-03-14",
    "0000-01-01",
    "1985-W11",
]


def _vn_today() -> date:
    return datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()


@st.composite
def dates(draw: st.DrawFn) -> Attack:
    seed = draw(seeds)
    path = draw(st.sampled_from(_paths(seed, lambda p, v: p[-1] in DATE_FIELDS)))
    kind = draw(st.sampled_from(KINDS["dates"]))
    if kind == "future":  # two days on: the day may turn in Vietnam while the corpus runs
        value: Any = draw(st.dates(_vn_today() + timedelta(days=2), date(9999, 12, 31))).isoformat()
    elif kind == "far_past":  # before 1900: no citizen id encodes it, and no person is born before it
        value = draw(st.dates(date(1, 1, 1), date(1899, 12, 31))).isoformat()
    elif kind == "malformed":
        value = draw(st.sampled_from(MALFORMED_DATES))
    else:
        value = draw(st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.booleans())
    _set(seed, path, value)
    # A year of one to three digits is too short to look for in the answer ("2 invalid fields").
    years = (str(int(value[:4])),) if kind == "far_past" and int(value[:4]) >= 1000 else ()
    return _attack("dates", kind, 422, _encoded(seed), seed, numbers=years)


# --- numbers ------------------------------------------------------------------------------------

NOT_MONEY: Final = (
    st.integers(max_value=-1)
    | st.integers(min_value=10**15 + 1, max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.integers(0, 10**9).map(str)
)
NOT_AREA: Final = (
    st.floats(max_value=0.0, allow_nan=False, allow_infinity=False)
    | st.floats(min_value=10_000_000.5, allow_nan=False, allow_infinity=False)
    | st.integers(max_value=0)
    | st.integers(min_value=10_000_001, max_value=10**400)
    | st.booleans()
)
NOT_SIZE: Final = st.integers(max_value=0) | st.integers(min_value=50 * 1024 * 1024 + 1, max_value=10**30)
NOT_NUMBERS: Final = st.sampled_from(
    [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000, b"01", b"+1", b".5", b"0x10"]
)
NUMBER_FIELDS: Final = {"area_m2": NOT_AREA, "size_bytes": NOT_SIZE, **{f: NOT_MONEY for f in MONEY_FIELDS}}


@st.composite
def numbers(draw: st.DrawFn) -> Attack:
    seed = draw(seeds.filter(lambda s: _paths(s, lambda p, v: p[-1] in NUMBER_FIELDS)))
    path = draw(st.sampled_from(_paths(seed, lambda p, v: p[-1] in NUMBER_FIELDS)))
    if draw(st.booleans()):
        return _attack("numbers", "not_json_number", 422, _spliced(seed, path, draw(NOT_NUMBERS)), seed)
    _set(seed, path, draw(NUMBER_FIELDS[str(path[-1])]))
    return _attack("numbers", "out_of_range_or_type", 422, _encoded(seed), seed)


# --- the Idempotency-Key ------------------------------------------------------------------------


@st.composite
def keys(draw: st.DrawFn) -> Attack:
    seed = draw(seeds)
    key = draw(
        st.none()
        | st.sampled_from([b"", b" ", b"   "])
        | st.integers(201, 2000).map(lambda n: b"k" * n)
        | st.binary(min_size=1, max_size=20).filter(
            lambda b: any(x < 0x20 or x > 0x7E for x in b) and b"\n" not in b and b"\r" not in b
        )
    )
    return _attack("keys", "no_key", 400, _encoded(seed), seed, key=key)


FAMILIES: Final = {
    "structure": structure(),
    "encoding": encoding(),
    "characters": characters(),
    "sizes": sizes(),
    "dates": dates(),
    "numbers": numbers(),
    "keys": keys(),
}

# --- the runs -----------------------------------------------------------------------------------


@pytest.fixture
def intake() -> Iterator[tuple[FastAPI, IntakeStore]]:
    store = IntakeStore(Path(tempfile.mkdtemp(prefix="intake-corpus-")) / "intake.db")
    app = FastAPI()
    add_routes(app, Intake(store, CATALOG, default_calendar(), "corpus."), relay=None)
    yield app, store
    store.close()


def _run(app: FastAPI, requests: Callable[[httpx.AsyncClient, asyncio.AbstractEventLoop], None]) -> None:
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
    try:
        requests(client, loop)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


def _repeats(answer: str, value: str) -> bool:
    return any(
        form in answer
        for form in {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    )


def _said_beyond_field_names(problem: dict[str, Any]) -> str:
    """The answer without the field names it points at: naming the field the sender wrote is the point
    of the answer, so a value that merely recurs inside a field name (``x_000000`` holding ``"000000"``)
    is not a repeat."""
    errors = [{k: v for k, v in error.items() if k != "field"} for error in problem.get("errors") or []]
    return json.dumps({**problem, "errors": errors}, ensure_ascii=False)


CORPUS_SETTINGS: Final = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def test_hostile_dossiers_get_the_4xx_of_their_kind_with_a_reason_and_publish_nothing(
    intake: tuple[FastAPI, IntakeStore],
) -> None:
    app, store = intake
    seen: Counter[str] = Counter()

    def requests(client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        @CORPUS_SETTINGS
        @given(attack=st.one_of(list(FAMILIES.values())))
        def one(attack: Attack) -> None:
            headers: dict[bytes, bytes] = {}
            if attack.key is not None:
                headers[b"Idempotency-Key"] = attack.key
            if attack.content_type is not None:
                headers[b"Content-Type"] = attack.content_type.encode()
            answer = loop.run_until_complete(client.post("/dossiers", content=attack.body, headers=headers))
            seen[f"{attack.family}.{attack.kind}"] += 1
            context = (attack.family, attack.kind, answer.status_code, answer.text[:300])
            assert answer.status_code == attack.status, context
            problem = answer.json()
            assert isinstance(problem["detail"], str) and problem["detail"].strip(), context
            assert len(problem.get("errors") or []) <= 100, context
            assert store.outbox.size() == 0, context
            said = _said_beyond_field_names(problem)
            leaked = [value for value in attack.strings if _repeats(said, value)]
            leaked += [n for n in attack.numbers if re.search(rf"(?<![0-9]){n}(?![0-9])", said)]
            assert not leaked, (*context, leaked)

        one()

    _run(app, requests)
    assert sum(seen.values()) >= EXAMPLES
    families = Counter(name.split(".")[0] for name in seen.elements())
    assert all(families[f] >= 50 for f in FAMILIES), families
    assert set(seen) == {f"{family}.{kind}" for family, kinds in KINDS.items() for kind in kinds}


URL_SAFE: Final = re.compile(r"[A-Za-z0-9.%_-]+")
CODE_VALUES: Final = st.one_of(
    st.sampled_from(CODES),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    st.sampled_from(CODES).flatmap(
        lambda code: st.sampled_from(
            [code + "\x00", code + " ", " " + code, code.replace(".", ","), code + "\u202e", code + "/.."]
        )
    ),
    st.sampled_from(["٩.٩٠٠٠٠١", "９.９０００００１", "9.900001\u200b", "../../etc/passwd", "%00", "%ff%fe"]),
    st.integers(100, 6000).map(lambda n: "9" * n),
).filter(lambda value: value.strip("./") != "")


@pytest.mark.parametrize("suffix", ["", "/example"], ids=["procedure", "example"])
def test_hostile_procedure_codes_get_the_procedure_or_a_404_with_a_reason(
    intake: tuple[FastAPI, IntakeStore], suffix: str
) -> None:
    app, store = intake
    seen: list[int] = []

    def requests(client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        @CORPUS_SETTINGS
        @given(code=CODE_VALUES, raw=st.booleans())
        def one(code: str, raw: bool) -> None:
            # raw: percent signs go as they are, so %ff reaches the router as a byte that is no UTF-8
            path = code if raw and URL_SAFE.fullmatch(code) else quote(code, safe="")
            answer = loop.run_until_complete(client.get(f"/procedures/{path}{suffix}"))
            seen.append(answer.status_code)
            context = (code, answer.status_code, answer.text[:300])
            if answer.status_code == 200:
                body = answer.json()
                assert (body["code"] if suffix == "" else body["procedure_code"]) in CODES, context
            elif answer.status_code == 307:  # the router's redirect of a path ending in "/" to one without
                assert code.endswith("/") and not answer.headers["location"].endswith("/"), context
            else:
                assert answer.status_code == 404, context
                assert answer.json()["detail"].strip(), context
            assert store.outbox.size() == 0

        one()

    _run(app, requests)
    assert len(seen) >= EXAMPLES
    assert 200 in seen and 404 in seen
