"""The Bruno collection (``bruno/``) stays complete: one request per gateway endpoint.

The ``.bru`` files are parsed here (only the blocks the collection uses: dictionary
blocks such as ``meta``, ``get``/``post``/``delete``, ``vars``, and text blocks such as
``body:json`` and ``docs``), then compared with the gateway's own OpenAPI schema, so a
route added without a request (or a request left behind by a removed route) fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vroom_gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = ROOT / "bruno"
ENVIRONMENT = COLLECTION / "environments" / "local.bru"

HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
#: Blocks whose body is free text (kept verbatim, minus the two-space indent).
TEXT_BLOCKS = ("body:json", "body:text", "docs", "script:pre-request", "script:post-response")
#: Served as a plain route for Prometheus; compared on neither side.
EXCLUDED = {("GET", "/metrics")}

#: The HTTP API table of the SPEC (19 endpoints), as (METHOD, normalized path).
SPEC_ENDPOINTS = {
    ("GET", "/health"),
    ("POST", "/reload"),
    ("POST", "/predict"),
    ("POST", "/predict/id"),
    ("POST", "/predict/batch"),
    ("POST", "/benchmark"),
    ("POST", "/benchmark/id"),
    ("POST", "/vehicles"),
    ("DELETE", "/vehicles/{param}"),
    ("GET", "/vehicles"),
    ("GET", "/vehicles/features"),
    ("GET", "/vehicles/{param}/features"),
    ("GET", "/stores"),
    ("GET", "/model"),
    ("POST", "/materialize"),
    ("POST", "/train"),
    ("GET", "/events"),
    ("GET", "/vehicles/events"),
    ("GET", "/pipelines/events"),
}
#: The second wave's endpoints (SPEC: "Second wave"; the issues give their contract).
SECOND_WAVE_ENDPOINTS = {
    ("GET", "/rollout"),
    ("POST", "/rollout"),
    ("POST", "/rollout/abort"),
    ("POST", "/rollout/promote"),
    ("GET", "/rollout/events"),
    ("GET", "/monitoring"),
}

_BLOCK_OPEN = re.compile(r"^([a-z][a-z:-]*) \{$")
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
_PATH_PARAM = re.compile(r"\{[^{}/]+\}")


@dataclass
class BruFile:
    path: Path
    dicts: dict[str, dict[str, str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


def parse_bru(path: Path) -> BruFile:
    """Parse a ``.bru`` file: top-level ``name {`` ... ``}`` blocks.

    Raises:
        ValueError: a line outside any block, an unterminated or duplicated block, or a
            dictionary line that is not ``key: value``.
    """
    parsed = BruFile(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        opened = _BLOCK_OPEN.match(line)
        if opened is None:
            raise ValueError(f"{path}:{index}: expected 'name {{', got {line!r}")
        name = opened.group(1)
        if name in parsed.dicts or name in parsed.texts:
            raise ValueError(f"{path}:{index}: block {name!r} appears twice")
        body: list[str] = []
        while True:
            if index >= len(lines):
                raise ValueError(f"{path}: block {name!r} is never closed")
            line = lines[index]
            index += 1
            if line == "}":
                break
            body.append(line)
        if name in TEXT_BLOCKS:
            parsed.texts[name] = "\n".join(item.removeprefix("  ") for item in body)
            continue
        entries: dict[str, str] = {}
        for item in body:
            if not item.strip():
                continue
            key, sep, value = item.strip().partition(":")
            if not sep or not key:
                raise ValueError(f"{path}: block {name!r}: expected 'key: value', got {item!r}")
            entries[key.strip()] = value.strip()
        parsed.dicts[name] = entries
    return parsed


@dataclass(frozen=True)
class Request:
    file: Path
    method: str
    url: str
    body_mode: str
    body: str | None

    @property
    def key(self) -> tuple[str, str]:
        return self.method, normalize_url(self.url)


def as_request(bru: BruFile) -> Request:
    methods = [name for name in bru.dicts if name in HTTP_METHODS]
    assert len(methods) == 1, f"{bru.path}: expected one HTTP method block, found {methods}"
    block = bru.dicts[methods[0]]
    assert "url" in block, f"{bru.path}: the {methods[0]} block has no url"
    return Request(
        file=bru.path,
        method=methods[0].upper(),
        url=block["url"],
        body_mode=block.get("body", "none"),
        body=bru.texts.get("body:json"),
    )


def normalize_url(url: str) -> str:
    """``{{baseUrl}}/vehicles/{{vehicleId}}?x=1`` -> ``/vehicles/{param}``."""
    assert url.startswith("{{baseUrl}}/"), f"{url}: requests go to {{{{baseUrl}}}}"
    path = url.removeprefix("{{baseUrl}}").split("?", 1)[0]
    return normalize_path(_VARIABLE.sub("{param}", path))


def normalize_path(path: str) -> str:
    """OpenAPI ``/vehicles/{vehicle_id}`` -> ``/vehicles/{param}``; trailing slash dropped."""
    path = _PATH_PARAM.sub("{param}", path)
    return path.rstrip("/") or "/"


def request_files() -> list[Path]:
    return sorted(
        path
        for path in COLLECTION.rglob("*.bru")
        if COLLECTION / "environments" not in path.parents
    )


def requests() -> list[Request]:
    return [as_request(parse_bru(path)) for path in request_files()]


def environment() -> dict[str, str]:
    return parse_bru(ENVIRONMENT).dicts["vars"]


def interpolate(text: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda match: variables[match.group(1)], text)


def openapi_endpoints(tmp_path: Path) -> set[tuple[str, str]]:
    # Imported here: the collection's own checks run even when the gateway does not import.
    from vroom_gateway.app import create_app  # noqa: PLC0415

    paths = create_app(GatewaySettings(state_dir=tmp_path)).openapi()["paths"]
    return {
        (method.upper(), normalize_path(path))
        for path, operations in paths.items()
        for method in operations
        if method in HTTP_METHODS
    }


def _listing(keys: set[tuple[str, str]]) -> str:
    return "\n".join(f"  {method} {path}" for method, path in sorted(keys, key=lambda k: k[::-1]))


# --- the parser itself -------------------------------------------------------------------


def test_parser_reads_dict_and_text_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.bru"
    path.write_text(
        "meta {\n  name: A b\n  seq: 3\n}\n\npost {\n  url: {{baseUrl}}/a/{{id}}?q=1\n"
        '  body: json\n}\n\nbody:json {\n  {\n    "a": [1, 2]\n  }\n}\n'
    )
    parsed = parse_bru(path)
    assert parsed.dicts["meta"] == {"name": "A b", "seq": "3"}
    request = as_request(parsed)
    assert request.key == ("POST", "/a/{param}")
    assert json.loads(request.body or "") == {"a": [1, 2]}


@pytest.mark.parametrize(
    "text",
    ["meta {\n  name: x\n", "meta {\n  nokey\n}\n", "stray line\n", "vars {\n}\nvars {\n}\n"],
    ids=["unclosed", "not-key-value", "outside-block", "duplicate-block"],
)
def test_parser_rejects_malformed_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.bru"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"expected|never closed|twice"):
        parse_bru(path)


# --- the collection ----------------------------------------------------------------------


def test_collection_file_and_environment() -> None:
    collection = json.loads((COLLECTION / "bruno.json").read_text())
    assert collection["version"] == "1"
    assert collection["type"] == "collection"
    assert collection["name"]
    assert environment()["baseUrl"] == "http://127.0.0.1:8000"


def test_every_request_file_is_well_formed() -> None:
    files = request_files()
    assert files, f"no .bru requests under {COLLECTION}"
    seen_seq: dict[tuple[Path, str], Path] = {}
    variables = environment()
    for path in files:
        bru = parse_bru(path)
        meta = bru.dicts.get("meta", {})
        assert meta.get("name"), f"{path}: meta has no name"
        assert meta.get("type") == "http", f"{path}: meta type must be http"
        assert meta.get("seq", "").isdigit(), f"{path}: meta seq must be a number"
        slot = (path.parent, meta["seq"])
        assert slot not in seen_seq, f"{path}: seq {meta['seq']} already used by {seen_seq[slot]}"
        seen_seq[slot] = path
        request = as_request(bru)
        if request.body_mode == "json":
            assert request.body is not None, f"{path}: body: json without a body:json block"
            try:
                json.loads(interpolate(request.body, variables))
            except json.JSONDecodeError as exc:
                pytest.fail(f"{path}: body:json is not valid JSON: {exc}")
        else:
            assert request.body_mode == "none", f"{path}: unexpected body mode"
            assert request.body is None, f"{path}: a body:json block but body: none"
        if request.method in ("POST", "PUT", "PATCH") and request.body is not None:
            assert request.body.strip(), f"{path}: empty JSON body"


def test_environment_defines_every_variable() -> None:
    defined = set(environment())
    missing: dict[str, set[str]] = {}
    for path in request_files():
        bru = parse_bru(path)
        text = "\n".join(
            [value for block in bru.dicts.values() for value in block.values()]
            + [bru.texts.get("body:json", "")]
        )
        for name in set(_VARIABLE.findall(text)) - defined:
            missing.setdefault(name, set()).add(str(path.relative_to(COLLECTION)))
    assert not missing, f"variables used but not defined in {ENVIRONMENT.name}: {missing}"


def test_one_request_per_spec_endpoint() -> None:
    keys = [request.key for request in requests()]
    duplicates = {key for key in keys if keys.count(key) > 1}
    assert not duplicates, f"more than one request for:\n{_listing(duplicates)}"
    collection = set(keys) - EXCLUDED
    expected = SPEC_ENDPOINTS | SECOND_WAVE_ENDPOINTS
    assert collection == expected, (
        f"SPEC endpoints without a request:\n{_listing(expected - collection)}\n"
        f"requests not in the SPEC:\n{_listing(collection - expected)}"
    )


def test_collection_matches_the_gateway_openapi(tmp_path: Path) -> None:
    api = openapi_endpoints(tmp_path) - EXCLUDED
    collection = {request.key for request in requests()} - EXCLUDED
    no_request = api - collection
    not_served = collection - api
    mismatch = bool(no_request or not_served)
    assert not mismatch, (
        f"in the gateway's OpenAPI but without a Bruno request ({len(no_request)}):\n"
        f"{_listing(no_request) or '  none'}\n"
        f"Bruno requests the gateway's OpenAPI does not have ({len(not_served)}):\n"
        f"{_listing(not_served) or '  none'}"
    )


def test_protected_endpoints_send_the_api_key(tmp_path: Path) -> None:
    """Requests to operations the gateway protects (``security`` in its OpenAPI) send
    ``{{apiKey}}`` as a bearer token; the others send no credentials."""
    from vroom_gateway.app import create_app  # noqa: PLC0415

    paths = create_app(GatewaySettings(state_dir=tmp_path)).openapi()["paths"]
    protected = {
        (method.upper(), normalize_path(path))
        for path, operations in paths.items()
        for method, operation in operations.items()
        if operation.get("security")
    }
    assert len(protected) >= 10
    for path in request_files():
        bru = parse_bru(path)
        request = as_request(bru)
        mode = bru.dicts[request.method.lower()].get("auth")
        if request.key in protected:
            assert mode == "bearer", f"{path}: a protected endpoint needs auth: bearer"
            assert bru.dicts.get("auth:bearer") == {"token": "{{apiKey}}"}, path
        else:
            assert mode == "none", f"{path}: an open endpoint sends no credentials"
