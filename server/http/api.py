"""A typed route table: each operation declares its body, query and response models.

From the declarations come request validation (unknown fields, sizes and types
refused before a handler runs), the bearer-token check, and the OpenAPI document
served at /api/openapi.json. Like aiohttp's RouteTableDef, a module builds its table
at import and the composition root mounts it.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from aiohttp import web
from multidict import CIMultiDict
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from server.auth.service import Principal
from server.errors import AppError, BadRequest, Unauthorized

B = TypeVar("B", bound=BaseModel | None)
Q = TypeVar("Q", bound=BaseModel | None)

PATH_PARAM = re.compile(r"{(\w+)}")
PATH_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
ERROR_TEXT = {
    400: "Bad request: malformed JSON, unknown fields, wrong types or sizes",
    401: "Not signed in, or the token is expired, tampered or revoked",
    403: "Signed in but not allowed",
    404: "Not found (or not visible to you)",
    409: "Conflict with the current state",
    413: "Request body too large",
    415: "Body must be application/json",
    429: "Too many requests",
    503: "A backing service is unavailable; try again shortly",
}

Authenticate = Callable[[web.Request], Awaitable[Principal]]


@dataclass
class ApiRequest(Generic[B, Q]):
    """What a handler receives: the raw request, who is asking, and the validated input.

    `response_headers`: headers the handler adds to its answer (a Set-Cookie) while still returning a model.
    """

    request: web.Request
    principal_or_none: Principal | None
    body: B
    query: Q
    path: dict[str, str]
    response_headers: CIMultiDict[str] = field(default_factory=CIMultiDict)

    @property
    def principal(self) -> Principal:
        if self.principal_or_none is None:  # only on routes declared auth=False
            raise Unauthorized("sign in first")
        return self.principal_or_none

    @property
    def app(self) -> web.Application:
        return self.request.app


Handler = Callable[[ApiRequest[Any, Any]], Awaitable[BaseModel | web.StreamResponse | None]]


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    auth: bool
    errors: tuple[int, ...]
    content_type: str = "application/json"
    raw: bool = False
    # auth=False routes whose handler checks the bearer token itself (or a signed link instead).
    own_auth: bool = False
    description: str = ""
    path_params: list[str] = field(default_factory=list)

    @property
    def operation_id(self) -> str:
        return getattr(self.handler, "__name__", f"{self.method}_{self.path}")


class Api:
    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        auth: bool = True,
        tags: Iterable[str] = (),
        errors: Iterable[int] = (),
        content_type: str = "application/json",
        raw: bool = False,
        own_auth: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Declare an operation. `raw`: the handler returns its own response of `content_type`.
        `own_auth` (with auth=False): the handler accepts the bearer token or another credential itself."""
        def decorator(handler: Handler) -> Handler:
            default_errors = {400} | ({401, 403} if auth or own_auth else set()) | ({404} if "{" in path else set())
            if body is not None:
                default_errors |= {413, 415}
            self.operations.append(Operation(
                method=method.upper(), path=path, handler=handler, summary=summary, tags=tuple(tags),
                body=body, query=query, response=response, status=status, auth=auth,
                errors=tuple(sorted(default_errors | set(errors))), content_type=content_type, raw=raw,
                own_auth=own_auth,
                description=inspect.cleandoc(handler.__doc__ or ""), path_params=PATH_PARAM.findall(path),
            ))
            return handler

        return decorator

    def mount(self, app: web.Application, authenticate: Authenticate) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, _wrap(op, authenticate), name=op.operation_id)


def _validation_message(where: str, exc: ValidationError) -> tuple[str, list[dict[str, str]]]:
    problems = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False)[:20]:
        loc = ".".join(str(part) for part in err["loc"]) or where
        problems.append({"field": loc, "problem": err["msg"]})
    first = problems[0] if problems else {"field": where, "problem": "invalid"}
    return f"invalid {where}: {first['field']}: {first['problem']}", problems


async def _read_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    if request.content_type != "application/json":
        raise AppError("request body must be application/json", code="request.unsupported_media_type", status=415)
    raw = await request.read()  # client_max_size turns an oversize body into 413 here
    try:
        return model.model_validate_json(raw or b"null", strict=True)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise BadRequest("request body is not valid JSON", code="request.malformed_json") from None
        message, problems = _validation_message("body", exc)
        raise BadRequest(message, code="request.invalid", details={"errors": problems}) from None


def _read_query(request: web.Request, model: type[BaseModel] | None) -> BaseModel | None:
    if model is None:
        if request.query:
            raise BadRequest("this route takes no query parameters", code="request.invalid")
        return None
    values: dict[str, Any] = {}
    for key in request.query:
        got = request.query.getall(key)
        if len(got) > 1:
            raise BadRequest(f"query parameter {key!r} given more than once", code="request.invalid")
        values[key] = got[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message, problems = _validation_message("query", exc)
        raise BadRequest(message, code="request.invalid", details={"errors": problems}) from None


def _wrap(op: Operation, authenticate: Authenticate) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        path = dict(request.match_info)
        for name, value in path.items():
            # fullmatch: with match, Python's `$` also matches before a final newline, letting "id\n" through.
            if not PATH_VALUE.fullmatch(value):
                raise AppError(f"no such {name}", code="not_found", status=404)
        principal = await authenticate(request) if op.auth else None
        if principal is not None:
            structlog.contextvars.bind_contextvars(user_id=principal.user_id, device_id=principal.device_id)
        query = _read_query(request, op.query)
        body = await _read_body(request, op.body) if op.body is not None else None
        req: ApiRequest[Any, Any] = ApiRequest(request, principal, body, query, path)
        result = await op.handler(req)
        response: web.StreamResponse
        if isinstance(result, web.StreamResponse):
            response = result
        elif result is None:
            response = web.Response(status=204)
        else:
            response = web.json_response(
                result.model_dump(mode="json"), status=op.status,
                dumps=lambda obj: json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
            )
        if req.response_headers and not response.prepared:
            response.headers.extend(req.response_headers)
        return response

    handler.__name__ = op.operation_id
    return handler


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("sign in first: send Authorization: Bearer <access token>", code="auth.unauthenticated")
    return token.strip()


def openapi_document(apis: Iterable[Api], *, title: str, version: str) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document from the declared operations."""
    operations = [op for api in apis for op in api.operations]
    models: list[tuple[type[BaseModel], Any]] = []
    seen: set[tuple[type[BaseModel], str]] = set()
    for op in operations:
        for model, mode in ((op.body, "validation"), (op.response, "serialization")):
            if model is not None and (model, mode) not in seen:
                seen.add((model, mode))
                models.append((model, mode))
    keyed, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": list(op.tags),
            "parameters": [],
            "responses": {},
        }
        if op.description:
            entry["description"] = op.description
        if op.auth or op.own_auth:
            entry["security"] = [{"bearerAuth": []}]
        for name in op.path_params:
            entry["parameters"].append({
                "name": name, "in": "path", "required": True,
                "schema": {"type": "string", "pattern": PATH_VALUE.pattern, "maxLength": 64, "minLength": 1},
            })
        if op.query is not None:
            qschema = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                prop = {k: v for k, v in prop.items() if k != "title"}
                entry["parameters"].append({"name": name, "in": "query", "required": name in required,
                                            "schema": prop})
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keyed[(op.body, "validation")]}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = {op.content_type: {"schema": keyed[(op.response, "serialization")]}}
        elif op.raw and op.content_type and op.status != 204 and op.method != "HEAD":
            raw_schema = {"type": "object"} if op.content_type == "application/json" else {"type": "string"}
            ok["content"] = {op.content_type: {"schema": raw_schema}}
        documented = 204 if op.response is None and not op.raw else op.status
        entry["responses"][str(documented)] = ok
        for code in op.errors:
            entry["responses"][str(code)] = {
                "description": ERROR_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        if not entry["parameters"]:
            del entry["parameters"]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Muster HTTP API. Errors always have the shape {\"error\": {\"code\", \"message\"}}."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }

