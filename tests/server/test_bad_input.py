"""Bad input is refused with a 4xx in the error shape, and changes nothing.

The operations come from the OpenAPI document, so a new route is covered as soon as it is declared. Every bad
request goes to a target that exists (a real user, department or device, a real refresh token, the right password),
sent as a user who may use the route (an admin), so that if the bad part were not refused the request would succeed
and change something; after each test the users, departments, devices and the whole audit log (every chain) must be
exactly as before.

What "changes nothing" means for sign-in throttling: a sign-in whose body is refused before any password is checked
is not a guess at a password, so it must not count towards the failed sign-in limits either (and writes no
auth.login_failed record, even for a username that exists). The sign-in limits test below checks that with limits of
one failure: after every kind of refused body, the right password still signs in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from rooms.views import ROOMS
from server.app import build_openapi, http_apis
from server.ids import now_ms
from server.schemas import DEFAULT_STR_MAX
from tests.factories import PASSWORD, Muster, Session, make_settings, running_muster

DOCUMENT: dict[str, Any] = build_openapi(http_apis())
COMPONENTS: dict[str, Any] = DOCUMENT["components"]["schemas"]
METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec["operationId"])

    @property
    def secured(self) -> bool:
        return bool(self.spec.get("security"))

    @property
    def body_schema(self) -> dict[str, Any] | None:
        body = self.spec.get("requestBody")
        return resolve(body["content"]["application/json"]["schema"]) if body else None

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]


def operations() -> Iterator[Operation]:
    for path, item in DOCUMENT["paths"].items():
        for method, spec in item.items():
            if method in METHODS:
                yield Operation(method.upper(), path, spec)


# -- values from the document ----------------------------------------------------------------------------------------


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = COMPONENTS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of `X | None`."""
    schema = resolve(schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [resolve(o) for o in schema[key] if resolve(o).get("type") != "null"]
            return non_null(options[0])
    return schema


def example(schema: dict[str, Any]) -> Any:
    """A value the schema accepts (for objects: the required properties only)."""
    schema = non_null(schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", DEFAULT_STR_MAX)
        for candidate in ("abc-1", "abc1", "abc", "a" * max(low, 1)):
            if low <= len(candidate) <= high and re.search(schema.get("pattern", ""), candidate):
                return candidate
        raise AssertionError(f"extend example() for this string schema: {schema}")
    if kind == "integer":
        return min(max(schema.get("minimum", 1), 1), schema.get("maximum", 1))
    if kind == "boolean":
        return False
    if kind == "array":
        return [example(schema["items"])] * schema.get("minItems", 0)
    if kind == "object":
        required = set(schema.get("required", []))
        return {name: example(prop) for name, prop in schema.get("properties", {}).items() if name in required}
    raise AssertionError(f"extend example() for this schema: {schema}")


def accepted_types(schema: dict[str, Any]) -> set[str]:
    schema = resolve(schema)
    if "anyOf" in schema:
        return {t for option in schema["anyOf"] for t in accepted_types(option)}
    return {schema.get("type", "any")}


def wrong_type(schema: dict[str, Any]) -> Any:
    """A JSON value of a type the schema does not take (strict: no "12" for 12, no "true" for true)."""
    return 12 if "string" in accepted_types(schema) else "12"


OPERATIONS = list(operations())
WITH_BODY = [op for op in OPERATIONS if op.body_schema is not None]
WITH_QUERY = [op for op in OPERATIONS if op.parameters("query")]
WITH_PATH = [op for op in OPERATIONS if op.parameters("path")]
SECURED = [op for op in OPERATIONS if op.secured]


def ids(ops: list[Operation]) -> list[str]:
    return [op.id for op in ops]


# -- a small world to aim at -----------------------------------------------------------------------------------------


@dataclass
class World:
    muster: Muster
    admin: Session
    target: Session
    department_id: str
    # A room the admin owns with the target in it; the admin's message there asks the target to acknowledge,
    # and the target's message asks the admin to.
    room_id: str
    message_id: str
    ack_message_id: str
    outsider_id: str
    # The admin's finished picture, and an unfinished upload of 10 bytes on the admin's device.
    file_id: str
    upload_id: str
    # Cases and tasks in the state each workflow operation needs, by operation id and path parameter.
    case_paths: dict[str, dict[str, str]]
    office_id: str
    colleague_id: str
    now: int

    def path_value(self, name: str, op: Operation | None = None) -> str:
        """A real record for a path parameter, so that only the bad part of a request can stop it."""
        real = {"user_id": self.target.user_id, "department_id": self.department_id,
                "device_id": self.admin.device_id,  # the admin's own device: both device routes may revoke it
                "room_id": self.room_id, "message_id": self.message_id, "file_id": self.file_id,
                "upload_id": self.upload_id}
        if op is not None and op.id == "acknowledge" and name == "message_id":
            return self.ack_message_id
        if op is not None and name in self.case_paths.get(op.id, {}):
            return self.case_paths[op.id][name]
        if name in self.case_paths.get("*", {}):
            return self.case_paths["*"][name]
        return real.get(name, "abc-1")

    def body(self, op: Operation) -> dict[str, Any]:
        """A valid body that would really do something: the right password, a live refresh token, a rename."""
        assert op.body_schema is not None
        body: dict[str, Any] = example(op.body_schema)
        realistic: dict[str, dict[str, Any]] = {
            "login": {"username": self.target.username, "password": PASSWORD},
            "refresh": {"refresh_token": self.target.refresh_token},
            "change_password": {"current_password": PASSWORD, "new_password": "another-password-7"},
            "create_user": {"username": "newcomer", "password": "a-long-password-7"},
            "update_user": {"display_name": "Renamed", "roles": ["commander"]},
            "update_department": {"name": "Renamed"},
            "create_room": {"kind": "group", "name": "Room", "member_ids": [self.target.user_id]},
            "open_direct": {"user_id": self.outsider_id},
            "update_room": {"name": "Renamed"},
            "invite": {"user_ids": [self.outsider_id]},
            "set_role": {"role": "admin"},
            "send_message": {"client_id": "abc-1", "text": "hello"},
            "edit_message": {"text": "edited"},
            "mark_read": {"seq": 1},
            "report_incident": {"title": "Flood", "type": "flood"},
            # Bodies whose fields are all optional get one, so that a spoiled body is never still valid.
            "verify_incident": {"level": 2}, "respond_incident": {"summary": "go"},
            "resolve_incident": {"summary": "safe"}, "close_incident": {"summary": "closed"},
            "accept_task": {"comment": "ok"}, "start_task": {"comment": "ok"}, "submit_task": {"result": "done"},
            "progress_task": {"text": "half done", "percent": 50, "client_id": "q-1"},
            "pass_task": {"comment": "good"}, "spot_check_task": {"comment": "fine"},
            "urge_task": {"message": "hurry"}, "supervise_task": {"reason": "late"},
            "restart_chain_task": {"step": "urge"}, "cancel_task": {"reason": "moot"},
            "start_project": {"date": self.now}, "build_project": {"date": self.now},
            "complete_project": {"date": self.now}, "operate_project": {"date": self.now},
            "update_incident": {"title": "Renamed"},
            "assign_incident_task": {"title": "Task", "deadline": self.now + DAY, "department_id": self.office_id},
            "assign_project_task": {"title": "Task", "deadline": self.now + DAY, "department_id": self.office_id},
            "delegate_task": {"assignee_id": self.colleague_id},
            "send_back_task": {"comment": "redo"},
            "reopen_task": {"comment": "redo"},
            "extend_task": {"deadline": self.now + 10 * DAY, "reason": "rain"},
            "reassign_task": {"department_id": self.office_id},
            "reopen_incident": {"reason": "again"},
            "create_project": {"code": "XM-9", "name": "Bridge", "owner_department_id": self.office_id},
            "update_project": {"name": "Renamed"},
            "report_progress": {"percent": 10, "client_id": "p-1"},
            "raise_problem": {"title": "Land"},
            "problem_to_task": {"deadline": self.now + DAY, "department_id": self.office_id},
        }
        return {**body, **realistic.get(op.id, {})}

    def url(self, op: Operation, *, path_values: dict[str, str] | None = None, query: str = "") -> URL:
        path = op.path
        for param in op.parameters("path"):
            name = param["name"]
            value = (path_values or {}).get(name, self.path_value(name, op))
            path = path.replace("{" + name + "}", value)
        return URL(f"{self.muster.url}{path}{'?' + query if query else ''}", encoded=True)

    async def send(self, op: Operation, *, data: bytes | None = None, json_body: Any = None,
                   content_type: str = "application/json", token: str | None = "admin",
                   path_values: dict[str, str] | None = None, query: str = "") -> tuple[int, Any, dict[str, str]]:
        headers = {}
        if token == "admin":
            if op.secured:
                headers.update(self.admin.headers)
        elif token is not None:
            headers["Authorization"] = token
        if json_body is not None:
            data = json.dumps(json_body).encode()
        if data is not None:
            headers["Content-Type"] = content_type
        elif op.id in TUS_REQUESTS:
            # tus requests are headers and raw bytes: the ones that would succeed.
            tus_headers, data = TUS_REQUESTS[op.id]
            headers.update(tus_headers)
        # Required query parameters get a valid value unless the test sends that parameter itself.
        needed = [f"{p['name']}={self.path_value(p['name']) if p['name'].endswith('_id') else example(p['schema'])}"
                  for p in op.parameters("query")
                  if p.get("required") and not re.search(rf"(^|&){p['name']}=", query)]
        query = "&".join([*needed, query] if query else needed)
        async with self.muster.http.request(op.method, self.url(op, path_values=path_values, query=query),
                                            data=data, headers=headers) as resp:
            text = (await resp.read()).decode("utf-8", "replace")  # downloads are bytes
            return resp.status, text, dict(resp.headers)


TUS_BYTES = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
TUS_REQUESTS: dict[str, tuple[dict[str, str], bytes | None]] = {
    "create_upload": ({"Tus-Resumable": "1.0.0", "Upload-Length": "10"}, None),
    "upload_bytes": (TUS_BYTES, b"abcde"),
    "terminate_upload": ({"Tus-Resumable": "1.0.0"}, None),
    "upload_override": ({**TUS_BYTES, "X-HTTP-Method-Override": "PATCH"}, b"abcde"),
}


def small_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def tus_upload(muster: Muster, session: Session, data: bytes, *, finish: bool) -> str:
    """An upload over HTTP; returns the file id when finished, else the upload id."""
    base = {**session.headers, "Tus-Resumable": "1.0.0"}
    async with muster.http.post(f"{muster.url}/api/uploads",
                                headers={**base, "Upload-Length": str(len(data))}) as resp:
        assert resp.status == 201, await resp.text()
        location = resp.headers["Location"]
    if not finish:
        return location.rsplit("/", 1)[1]
    async with muster.http.patch(f"{muster.url}{location}", data=data, headers={
            **base, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}) as resp:
        assert resp.status == 204, await resp.text()
        return resp.headers["Muster-File-Id"]


DAY = 86_400_000


async def _department(kernel: Any, parent_id: str) -> str:
    return str((await kernel.org.create_department(None, name="Spare", kind="department", parent_id=parent_id)).id)


async def workflow_world(muster: Muster, admin: Session, target: Session, office_id: str,
                         colleague_id: str, spare_parent: str, op_id: str | None) -> dict[str, dict[str, str]]:
    """Incidents, tasks, projects and problems in the states the workflow operations start from."""
    from workflows.views import INCIDENTS, PROJECT_SERVICE, TASK_SERVICE

    kernel = muster.kernel
    a, t = await kernel.auth.authenticate(admin.access_token), await kernel.auth.authenticate(target.access_token)
    incidents, tasks, projects = muster.app[INCIDENTS], muster.app[TASK_SERVICE], muster.app[PROJECT_SERVICE]
    wa, wt = await incidents.ctx.who(a), await incidents.ctx.who(t)
    now = incidents.ctx.clock()

    async def incident(*actions: str) -> str:
        i = await incidents.report(a, title="Flood", type="flood", level=3, description="", address="",
                                   latitude=None, longitude=None, attachments=[])
        for action in actions:
            await incidents.act(a, wa, i.id, action, reason="again" if action == "reopen" else "")
        return i.id

    responding = await incident("verify", "respond")

    async def task(*, assignee: str, steps: list[tuple[str, str]]) -> str:
        # A week's deadline: no automatic urge falls due (and posts to a room) while a test runs.
        made = await tasks.assign(a, case_type="incident", case_id=responding, room_id=None, title="Task",
                                  instructions="", priority="normal", deadline=now + 7 * DAY, department_id=None,
                                  assignee_id=assignee)
        for who, action in steps:
            actor, w = (a, wa) if who == "admin" else (t, wt)
            await tasks.act(actor, w, made.id, action, room_id=None, result="done")
        return made.id

    mine = await task(assignee=admin.user_id, steps=[])

    async def project(*actions: str, code: str) -> str:
        p = await projects.create(a, wa, code=code, name="Bridge", owner_department_id=office_id,
                                  responsible_department_ids=[], investment=1.0, address="", latitude=None,
                                  longitude=None, description="", planned={})
        for action in actions:
            await projects.act(a, wa, p.id, action)
        return p.id

    planning = await project(code="P-0")
    problem = await projects.raise_problem(a, wa, planning, title="Land", description="")
    paths: dict[str, dict[str, str]] = {
        "*": {"incident_id": responding, "task_id": mine, "project_id": planning, "problem_id": problem.id}}
    # Only the operation under test gets its own case in the state it starts from.
    special: dict[str, tuple[str, Callable[[], Awaitable[str]]]] = {
        "delete_department": ("department_id", lambda: _department(kernel, spare_parent)),
        "verify_incident": ("incident_id", lambda: incident()),
        "respond_incident": ("incident_id", lambda: incident("verify")),
        "resolve_incident": ("incident_id", lambda: incident("verify", "respond")),
        "close_incident": ("incident_id", lambda: incident("verify", "respond", "resolve")),
        "reopen_incident": ("incident_id", lambda: incident("verify", "respond", "resolve")),
        "start_task": ("task_id", lambda: task(assignee=admin.user_id, steps=[("admin", "accept")])),
        "submit_task": ("task_id", lambda: task(assignee=admin.user_id, steps=[("admin", "accept")])),
        "progress_task": ("task_id", lambda: task(assignee=admin.user_id, steps=[("admin", "accept")])),
        "pass_task": ("task_id", lambda: task(assignee=target.user_id,
                                              steps=[("target", "accept"), ("target", "submit")])),
        "send_back_task": ("task_id", lambda: task(assignee=target.user_id,
                                                   steps=[("target", "accept"), ("target", "submit")])),
        "spot_check_task": ("task_id", lambda: task(assignee=target.user_id, steps=[
            ("target", "accept"), ("target", "submit"), ("admin", "pass")])),
        "reopen_task": ("task_id", lambda: task(assignee=target.user_id, steps=[
            ("target", "accept"), ("target", "submit"), ("admin", "pass")])),
        "build_project": ("project_id", lambda: project("start", code="P-1")),
        "complete_project": ("project_id", lambda: project("start", "build", code="P-2")),
        "operate_project": ("project_id", lambda: project("start", "build", "complete", code="P-3")),
    }
    if op_id in special:
        name, make = special[op_id]
        paths[op_id] = {name: await make()}
    return paths


WORKFLOW_PATHS = ("/api/incidents", "/api/tasks", "/api/projects", "/api/problems", "/api/dashboard")


@pytest.fixture
async def world(muster: Muster, request: pytest.FixtureRequest) -> World:
    kernel = muster.kernel
    county = await kernel.org.create_department(None, name="County", kind="county", parent_id=None)
    office = await kernel.org.create_department(None, name="Office", kind="department", parent_id=county.id)
    # The admin also leads the office and inspects, so that every workflow operation is one they may take.
    await muster.create_user(username="chief", roles=["admin", "dept_lead", "inspector"], department_id=office.id)
    admin = await muster.login("chief")
    target = await muster.session("responder")
    outsider = await muster.create_user()
    rooms = muster.app[ROOMS]
    a, t = await kernel.auth.authenticate(admin.access_token), await kernel.auth.authenticate(target.access_token)
    room = await rooms.create_room(a, kind="group", name="Room", member_ids=[target.user_id])
    message, _ = await rooms.send_message(a, room_id=room.id, client_id="m1", text="please confirm",
                                          ack_user_ids=[target.user_id])
    asks_admin, _ = await rooms.send_message(t, room_id=room.id, client_id="m2", text="please confirm",
                                             ack_user_ids=[admin.user_id])
    file_id = await tus_upload(muster, admin, small_png(), finish=True)
    upload_id = await tus_upload(muster, admin, b"0123456789", finish=False)
    colleague = await muster.create_user(department_id=office.id)
    # The workflow cases are built only for the operations that use them (they take a while).
    op = getattr(request.node, "callspec", None) and request.node.callspec.params.get("op")
    wanted = op is None or not isinstance(op, Operation) or op.path.startswith(WORKFLOW_PATHS) \
        or op.id == "delete_department"
    case_paths = await workflow_world(muster, admin, target, office.id, colleague["id"], county.id,
                                      op.id if isinstance(op, Operation) else None) if wanted else {}
    return World(muster=muster, admin=admin, target=target, department_id=office.id, room_id=room.id,
                 message_id=message.id, ack_message_id=asks_admin.id, outsider_id=outsider["id"],
                 file_id=file_id, upload_id=upload_id, case_paths=case_paths, office_id=office.id,
                 colleague_id=colleague["id"], now=now_ms())


async def snapshot(muster: Muster) -> dict[str, Any]:
    """Everything a request could change: the users, departments, devices and the audit log of every chain."""
    storage = muster.kernel.storage
    users = await storage.list_users(limit=500)
    rooms = {room.id: room for user in users for room, _ in await storage.list_user_rooms(user.id)}
    from server.ids import now_ms

    return {
        "uploads": {user.id: await storage.open_upload_bytes(user.id, now=now_ms()) for user in users},
        "upload_offsets": [(u.id, u.offset) for u in await storage.list_expired_uploads(now=2**53, limit=500)],
        "files": {user.id: await storage.owned_file_bytes(user.id) for user in users},
        "audit": [record.id for record in await storage.list_audit_records(limit=10_000)],
        "users": users,
        "departments": await storage.list_departments(),
        "devices": {user.id: await storage.list_devices(user.id) for user in users},
        "rooms": rooms,
        "members": {room_id: await storage.list_members(room_id) for room_id in rooms},
        "events": {room_id: await storage.list_events(room_id, limit=500) for room_id in rooms},
        "acks": {room_id: [await storage.list_message_acks(room_id, e.id)
                           for e in await storage.list_events(room_id, limit=500)] for room_id in rooms},
    }


def assert_error(status: int, text: str, *, expected_status: int, codes: set[str] | None = None) -> dict[str, Any]:
    assert status == expected_status, (status, text)
    body = json.loads(text)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), body
    assert error["message"], body
    if codes is not None:
        assert error["code"] in codes, body
    return error


@pytest.mark.parametrize("op", OPERATIONS, ids=ids(OPERATIONS))
async def test_the_request_aimed_at_each_operation_succeeds_when_nothing_is_wrong(world: World, op: Operation) -> None:
    """The baseline the tests below spoil one part of: it succeeds, and a write really changes something. So a
    refusal below is the bad part's doing, and bad input let through to a write would show in the snapshot."""
    before = await snapshot(world.muster)
    status, text, _ = await world.send(op, json_body=world.body(op) if op.body_schema is not None else None)
    assert 200 <= status < 300, (status, text)
    if op.method != "GET":
        assert await snapshot(world.muster) != before


# -- bodies ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", WITH_BODY, ids=ids(WITH_BODY))
async def test_malformed_json_is_refused(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    valid = json.dumps(world.body(op))
    for raw in (valid[:-1], valid + "}", "{'username': 'x'}", '{"a": 1,}', "{", "\x00", valid.replace(":", "=", 1)):
        status, text, _ = await world.send(op, data=raw.encode())
        assert_error(status, text, expected_status=400, codes={"request.malformed_json"})
    status, text, _ = await world.send(op, data=b"\xff\xfe{}")  # not UTF-8
    assert_error(status, text, expected_status=400, codes={"request.malformed_json", "request.invalid"})
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", WITH_BODY, ids=ids(WITH_BODY))
async def test_json_that_is_not_an_object_is_refused(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    valid = world.body(op)
    for value in ([valid], [], "text", 42, 1.5, True, None):
        status, text, _ = await world.send(op, data=json.dumps(value).encode())
        assert_error(status, text, expected_status=400, codes={"request.invalid"})
    status, text, _ = await world.send(op, data=b"")  # no body at all
    assert_error(status, text, expected_status=400, codes={"request.invalid"})
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", WITH_BODY, ids=ids(WITH_BODY))
async def test_an_unknown_field_is_refused(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    extras: list[dict[str, Any]] = [{"unexpected": 1}, {"Username": "x"}, {"": None}, {"__proto__": {}}]
    for extra in extras:
        status, text, _ = await world.send(op, json_body={**world.body(op), **extra})
        error = assert_error(status, text, expected_status=400, codes={"request.invalid"})
        assert "Extra inputs are not permitted" in json.dumps(error), error
    assert await snapshot(world.muster) == before


def has_sized_field(op: Operation) -> bool:
    props = (op.body_schema or {}).get("properties", {}).values()
    return any(non_null(p).get("type") in ("string", "array") and "enum" not in non_null(p) for p in props)


# Bodies made only of enums, numbers and booleans (a role, a sequence number) have nothing to make too long.
WITH_SIZED_BODY = [op for op in WITH_BODY if has_sized_field(op)]


@pytest.mark.parametrize("op", WITH_SIZED_BODY, ids=ids(WITH_SIZED_BODY))
async def test_strings_and_lists_longer_than_their_limit_are_refused(world: World, op: Operation) -> None:
    assert op.body_schema is not None
    before = await snapshot(world.muster)
    tried = 0
    for name, prop in op.body_schema.get("properties", {}).items():
        schema = non_null(prop)
        if schema.get("type") == "string" and "enum" not in schema and "const" not in schema:
            # Every string has a limit (the documented maxLength, else the payload default).
            limit = schema.get("maxLength", DEFAULT_STR_MAX)
            too_long: Any = "a" * (limit * 4 + 1)
        elif schema.get("type") == "array":
            assert "maxItems" in schema, f"{op.id}: list {name} has no documented limit"
            too_long = [example(schema["items"])] * (schema["maxItems"] * 4 + 1)
        else:
            continue
        tried += 1
        status, text, _ = await world.send(op, json_body={**world.body(op), name: too_long})
        assert_error(status, text, expected_status=400, codes={"request.invalid"})
    assert tried, f"{op.id} has no string or list field to try"
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", WITH_BODY, ids=ids(WITH_BODY))
async def test_a_field_of_the_wrong_type_is_refused(world: World, op: Operation) -> None:
    assert op.body_schema is not None
    before = await snapshot(world.muster)
    required = set(op.body_schema.get("required", []))
    for name, prop in op.body_schema.get("properties", {}).items():
        types = accepted_types(prop)
        wrong = [wrong_type(prop), {"nested": "object"}]
        if "array" not in types:
            wrong.append(["a", 1])
        if name in required or "null" not in types:
            wrong.append(None)  # null where null is not allowed
        for value in wrong:
            status, text, _ = await world.send(op, json_body={**world.body(op), name: value})
            assert_error(status, text, expected_status=400, codes={"request.invalid"})
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", WITH_BODY, ids=ids(WITH_BODY))
async def test_a_body_that_is_not_json_by_its_content_type_is_refused(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    valid = json.dumps(world.body(op)).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                         "application/octet-stream", "application/jsonx", "text/json"):
        status, text, _ = await world.send(op, data=valid, content_type=content_type)
        assert_error(status, text, expected_status=415, codes={"request.unsupported_media_type"})
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", WITH_BODY, ids=ids(WITH_BODY))
async def test_a_body_over_the_size_limit_is_refused(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    limit = world.muster.kernel.settings.server.max_body_bytes
    valid = json.dumps(world.body(op))
    oversized = (valid[:-1] + ', "padding": "' + "x" * limit + '"}').encode()
    status, text, _ = await world.send(op, data=oversized)
    assert_error(status, text, expected_status=413, codes={"request.too_large"})
    assert await snapshot(world.muster) == before


async def test_refused_sign_in_bodies_do_not_count_towards_the_sign_in_limits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"max_failures_per_account": 1, "max_failures_per_address": 1})
    async with running_muster(settings) as muster:
        user = await muster.create_user()
        login = next(op for op in OPERATIONS if op.id == "login")
        good = {"username": user["username"], "password": PASSWORD, "device_name": "desk", "device_kind": "console"}
        before = await snapshot(muster)
        refused = [json.dumps(body).encode() for body in (
            {**good, "extra": 1}, {**good, "password": 7}, {**good, "device_kind": "tablet"},
            {**good, "username": "u" * 500}, [good], None)]
        for data in [*refused, b"{", b""]:
            for content_type, expected in (("application/json", 400), ("text/plain", 415)):
                async with muster.http.post(f"{muster.url}{login.path}", data=data,
                                            headers={"Content-Type": content_type}) as resp:
                    assert_error(resp.status, await resp.text(), expected_status=expected)
        assert await snapshot(muster) == before
        session = await muster.login(user["username"])  # not throttled: none of the above was a failed sign-in
        assert session.user_id == user["id"]


# -- query strings ---------------------------------------------------------------------------------------------------


def bad_query_values(schema: dict[str, Any]) -> list[str]:
    schema = non_null(schema)
    values = ["", "%00", "a" * 300]
    if schema.get("type") == "integer":
        values += ["abc", "1.5", "0x10", "1e3", "%EF%BC%91", str(schema.get("maximum", 2**63) + 1),
                   str(schema.get("minimum", -(2**63)) - 1)]
    if "enum" in schema:
        values += ["nope", schema["enum"][0].upper(), schema["enum"][0] + "%0A"]
    if "pattern" in schema:
        values += ["has%20space", "%C3%A4", "a%2Fb", "a%0A"]
    if "maxLength" in schema:
        values.append("a" * (schema["maxLength"] + 1))
    return values


@pytest.mark.parametrize("op", OPERATIONS, ids=ids(OPERATIONS))
async def test_an_unknown_query_key_is_refused(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    body = world.body(op) if op.body_schema is not None else None
    for query in ("unexpected=1", "unexpected", "LIMIT=1", "limit[]=1", "%00=1"):
        status, text, _ = await world.send(op, json_body=body, query=query)
        assert_error(status, text, expected_status=400, codes={"request.invalid"})
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", WITH_QUERY, ids=ids(WITH_QUERY))
async def test_query_values_of_the_wrong_type_or_size_are_refused(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    for param in op.parameters("query"):
        for value in bad_query_values(param["schema"]):
            status, text, _ = await world.send(op, query=f"{param['name']}={value}")
            # a search text of a control character is well-formed but has no words in it
            assert_error(status, text, expected_status=400, codes={"request.invalid", "search.empty"})
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", WITH_QUERY, ids=ids(WITH_QUERY))
async def test_a_repeated_query_key_is_refused(world: World, op: Operation) -> None:
    for param in op.parameters("query"):
        name = param["name"]
        value = world.path_value(name) if name.endswith("_id") else example(param["schema"])
        status, text, _ = await world.send(op, query=f"{name}={value}")
        assert status == 200, text  # the value on its own is fine...
        # (taken after the good request: exporting a disposal record is itself audited)
        before = await snapshot(world.muster)
        status, text, _ = await world.send(op, query=f"{name}={value}&{name}={value}")
        assert_error(status, text, expected_status=400, codes={"request.invalid"})  # ...but not twice
        assert await snapshot(world.muster) == before


# -- paths, methods, tokens ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", WITH_PATH, ids=ids(WITH_PATH))
async def test_path_values_too_long_or_with_illegal_characters_are_not_found(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    body = world.body(op) if op.body_schema is not None else None
    for param in op.parameters("path"):
        real = world.path_value(param["name"])
        for value in ("a" * 65, real + "a" * (65 - len(real)), real + "%0A", "%0A" + real, real + "%20",
                      "a%20b", "a%00b", "%C3%A4", "a'b", "a%22b", "a%3Cb%3E", "a%2Fb", "a%5Cb", "*"):
            status, text, _ = await world.send(op, json_body=body, path_values={param["name"]: value})
            assert_error(status, text, expected_status=404, codes={"not_found"})
    assert await snapshot(world.muster) == before


async def test_unknown_routes_are_404_in_the_error_shape(world: World) -> None:
    for method in ("GET", "POST", "DELETE"):
        for path in ("/nope", "/api", "/api/", "/api/nope", "/api/users/abc/extra", "/api/admin",
                     "/api/openapi.json/", "/API/me", "/api/me/", "/api//me"):
            async with world.muster.http.request(method, URL(f"{world.muster.url}{path}", encoded=True),
                                                 headers=world.admin.headers) as resp:
                assert_error(resp.status, await resp.text(), expected_status=404, codes={"not_found"})


PATHS = sorted(DOCUMENT["paths"])


@pytest.mark.parametrize("path", PATHS)
async def test_wrong_methods_are_405_in_the_error_shape(world: World, path: str) -> None:
    before = await snapshot(world.muster)
    allowed = {method.upper() for method in DOCUMENT["paths"][path]}  # HEAD and OPTIONS included
    url = URL(f"{world.muster.url}{path}", encoded=True).with_path(
        path.replace("{", "").replace("}", ""))  # any well-formed value: the method is what is wrong
    for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - allowed):
        async with world.muster.http.request(method, url, headers=world.admin.headers, json={}) as resp:
            assert_error(resp.status, await resp.text(), expected_status=405, codes={"http.method_not_allowed"})
            assert set(resp.headers["Allow"].replace(" ", "").split(",")) == allowed
    assert await snapshot(world.muster) == before


@pytest.mark.parametrize("op", SECURED, ids=ids(SECURED))
async def test_routes_that_need_a_token_refuse_requests_without_a_valid_one(world: World, op: Operation) -> None:
    before = await snapshot(world.muster)
    body = world.body(op) if op.body_schema is not None else None
    token = world.admin.access_token
    for authorization, code in ((None, "auth.unauthenticated"), ("", "auth.unauthenticated"),
                                ("Bearer", "auth.unauthenticated"), ("Bearer ", "auth.unauthenticated"),
                                (f"Basic {token}", "auth.unauthenticated"), (token, "auth.unauthenticated"),
                                ("Bearer not-a-token", "auth.invalid_token"),
                                (f"Bearer {token[:-2]}", "auth.invalid_token"),
                                (f"Bearer {token}x", "auth.invalid_token"),
                                (f"Bearer {'a' * 8000}", "auth.invalid_token")):
        status, text, _ = await world.send(op, json_body=body, token=authorization)
        assert_error(status, text, expected_status=401, codes={code})
    assert await snapshot(world.muster) == before


# -- regressions found by fuzzing ------------------------------------------------------------------------------------


async def test_explicit_nulls_in_a_user_update_mean_no_change(world: World) -> None:
    """PATCH with "roles": null once crashed the route (500); null now means "leave as it is"."""
    op = next(op for op in OPERATIONS if op.id == "update_user")
    before = await snapshot(world.muster)
    nulls = {"display_name": None, "department_id": None, "title": None, "roles": None, "disabled": None,
             "password": None}
    status, text, _ = await world.send(op, json_body=nulls)
    assert status == 200, text
    assert json.loads(text)["roles"] == ["responder"]
    after = await snapshot(world.muster)
    assert after["users"] == before["users"] and after["devices"] == before["devices"]
