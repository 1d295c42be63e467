"""The OpenAPI document at /api/openapi.json is kept true.

It lists exactly the routes the server mounts, it is valid OpenAPI 3.1 (its schemas valid JSON Schema 2020-12),
and real responses match the schemas it documents for them.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import pytest
import schemathesis

from server.web import ROUTE_PREFIX as WEB_ROUTE_PREFIX
from tests.factories import Muster

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def served_document(muster: Muster) -> dict[str, Any]:
    status, document = await muster.request("GET", "/api/openapi.json")
    assert status == 200
    assert isinstance(document, dict)
    return document


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def response_validator(document: dict[str, Any], method: str, path: str, status: int, *,
                       closed: bool = False) -> jsonschema_rs.Validator:
    """A validator for the JSON body the document promises for `status` of `method path`.

    `closed`: also refuse properties the document does not list (an undocumented field in a response).
    """
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} does not document status {status}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    components = copy.deepcopy(document["components"])
    if closed:
        for component in components["schemas"].values():
            _close(component)
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": components, **schema}
    return jsonschema_rs.validator_for(root)


def _close(schema: Any) -> None:
    if isinstance(schema, dict):
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _close(value)
    elif isinstance(schema, list):
        for value in schema:
            _close(value)


def assert_matches(validator: jsonschema_rs.Validator, body: Any) -> None:
    problems = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert not problems, problems


# -- routes ----------------------------------------------------------------------------------------------------------


async def test_every_mounted_route_is_documented_and_every_documented_operation_is_mounted(muster: Muster) -> None:
    mounted: set[tuple[str, str]] = set()
    for route in muster.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/socket.io/"):
            continue  # the Socket.IO transport, not part of the HTTP API
        if route.resource is not None and (route.resource.name or "").startswith(WEB_ROUTE_PREFIX):
            continue  # the web clients' pages and files (server/web.py), not part of the HTTP API
        mounted.add((route.method, path))
    documented = documented_operations(await served_document(muster))
    # aiohttp answers HEAD for a GET route on its own; only a HEAD route of its own (a download's headers, a tus
    # offset) is documented.
    mounted = {(method, path) for method, path in mounted
               if method != "HEAD" or ("GET", path) not in mounted or ("HEAD", path) in documented}
    assert mounted - documented == set(), "mounted but not documented"
    assert documented - mounted == set(), "documented but not mounted"


async def test_each_documented_operation_answers_on_the_router(muster: Muster) -> None:
    """Not only listed on the router: a request to each documented operation reaches a handler (no 404/405 from
    routing). Sent without a token and with dummy path values, so it changes nothing."""
    document = await served_document(muster)
    for method, path in sorted(documented_operations(document)):
        url = path.replace("{", "").replace("}", "")  # {user_id} -> user_id: a well-formed but unknown id
        status, body = await muster.request(method, url)
        assert status != 405, (method, path)
        assert status != 404 or body["error"]["code"] != "not_found", (method, path, body)


async def test_operation_ids_are_unique_and_every_operation_documents_a_success(muster: Muster) -> None:
    document = await served_document(muster)
    ids = [op["operationId"] for item in document["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                assert any(code.startswith("2") for code in op["responses"]), (method, path)
                if op.get("security"):  # a route that needs a token says what happens without one
                    assert "401" in op["responses"], (method, path)


# -- validity --------------------------------------------------------------------------------------------------------


async def test_the_document_is_valid_openapi_3_1(muster: Muster) -> None:
    document = await served_document(muster)
    assert document["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # raises on a document that breaks the OpenAPI 3.1 meta-schema
    assert len(list(schema.get_all_operations())) == len(documented_operations(document))


def test_the_openapi_validation_is_not_vacuous() -> None:
    """The validator used above does refuse a broken document, so its silence means something."""
    broken = {"openapi": "3.1.0", "info": {"title": "x", "version": "1"},
              "paths": {"/x": {"get": {"responses": {"200": {"description": 5}}}}}}
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


async def test_every_component_schema_is_valid_json_schema_2020_12(muster: Muster) -> None:
    document = await served_document(muster)
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}), name


async def test_every_reference_in_the_document_resolves(muster: Muster) -> None:
    document = await served_document(muster)
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]


# -- real responses --------------------------------------------------------------------------------------------------


async def test_real_responses_match_their_documented_schemas(muster: Muster) -> None:
    document = await served_document(muster)
    admin = await muster.session("admin")
    kernel = muster.kernel
    county = await kernel.org.create_department(None, name="示范县", kind="county", parent_id=None)
    await kernel.org.create_department(None, name="应急局", kind="department", parent_id=county.id)
    member = await muster.create_user(roles=["responder"], department_id=county.id)
    await muster.login(member["username"], device_kind="mobile")

    samples: list[tuple[str, str, str, dict[str, Any]]] = [
        ("POST", "/api/auth/login", "/api/auth/login",
         {"json": {"username": member["username"], "password": "correct-horse-42", "device_name": "phone",
                   "device_kind": "mobile"}}),
        ("GET", "/api/me", "/api/me", {}),
        ("GET", "/api/me/devices", "/api/me/devices", {}),
        ("GET", "/api/users", "/api/users", {}),
        ("GET", "/api/users/{user_id}", f"/api/users/{member['id']}", {}),
        ("GET", "/api/admin/users", "/api/admin/users?limit=2", {}),
        ("GET", "/api/departments", "/api/departments", {}),
        ("GET", "/api/audit", "/api/audit", {}),
        ("GET", "/api/audit/verify", "/api/audit/verify", {}),
        ("GET", "/readyz", "/readyz", {}),
        ("GET", "/healthz", "/healthz", {}),
    ]
    for method, path, url, kw in samples:
        status, body = await muster.request(method, url, admin, **kw)
        assert 200 <= status < 300, (url, status, body)
        assert_matches(response_validator(document, method, path, status), body)
        assert_matches(response_validator(document, method, path, status, closed=True), body)
        if path in ("/api/users", "/api/departments", "/api/audit", "/api/admin/users", "/api/me/devices"):
            listed = next(iter(v for v in body.values() if isinstance(v, list)))
            assert listed, f"{url} sampled an empty list; the items' schema went unchecked"

    # Errors have the documented error shape too.
    status, body = await muster.request("GET", "/api/me")
    assert status == 401
    assert_matches(response_validator(document, "GET", "/api/me", 401), body)
    status, body = await muster.request("POST", "/api/auth/login", json={"username": "x"})
    assert status == 400
    assert_matches(response_validator(document, "POST", "/api/auth/login", 400), body)


async def test_response_validation_is_not_vacuous(muster: Muster) -> None:
    """A body that breaks the documented schema is caught, so a passing check above means something."""
    document = await served_document(muster)
    me = response_validator(document, "GET", "/api/me", 200)
    assert not me.is_valid({})
    assert not me.is_valid({"user": {}, "device": {}, "permissions": "all"})
    error = response_validator(document, "GET", "/api/me", 401)
    assert not error.is_valid({"message": "no"})
    closed = response_validator(document, "GET", "/healthz", 200, closed=True)
    assert closed.is_valid({"status": "ok"}) and not closed.is_valid({"status": "ok", "secret": 1})
