"""Who may do what: the rule table (pure) and every admin route refusing non-admins."""

from __future__ import annotations

import re

import pytest

from server.audit.service import AuditLog
from server.auth.service import Principal
from server.http.ops import OPENAPI
from server.permissions import KERNEL_RULES, Permissions
from server.storage.records import Device, User
from tests.factories import Muster

ROLES = ["admin", "commander", "dept_lead", "responder", "inspector"]


def principal(role: str, user_id: str = "u1") -> Principal:
    user = User(id=user_id, username=role, display_name=role, department_id=None, title="", roles=(role,),
                disabled=False, password_hash=None, created_at=0, updated_at=0)
    device = Device(id="d-" + user_id, user_id=user_id, name="x", kind="console", created_at=0, last_seen_at=0)
    return Principal(user=user, device=device)


# action -> roles that may do it (resource None)
EXPECTED = {
    "org.read": set(ROLES),
    "org.manage": {"admin"},
    "audit.read": {"admin", "inspector"},
    "audit.verify": {"admin", "inspector"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_rule_table(role: str, action: str) -> None:
    perms = Permissions(AuditLog(None))  # type: ignore[arg-type]  # allows() does no I/O
    assert perms.allows(principal(role), action) == (role in EXPECTED[action])


def test_every_kernel_rule_is_covered_here() -> None:
    assert set(KERNEL_RULES) == set(EXPECTED) | {"device.revoke_own"}


def test_own_device_rule() -> None:
    perms = Permissions(AuditLog(None))  # type: ignore[arg-type]
    mine = Device(id="d1", user_id="u1", name="x", kind="mobile", created_at=0, last_seen_at=0)
    theirs = Device(id="d2", user_id="u2", name="x", kind="mobile", created_at=0, last_seen_at=0)
    assert perms.allows(principal("responder", "u1"), "device.revoke_own", mine)
    assert not perms.allows(principal("admin", "u1"), "device.revoke_own", theirs)


def test_unknown_action_is_denied() -> None:
    perms = Permissions(AuditLog(None))  # type: ignore[arg-type]
    assert not perms.allows(principal("admin"), "no.such.action")


def test_rules_cannot_be_silently_replaced() -> None:
    perms = Permissions(AuditLog(None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        perms.register("org.manage", lambda p, r: True)


def admin_operations(muster: Muster) -> list[tuple[str, str]]:
    doc = muster.app[OPENAPI]
    return [(method.upper(), path) for path, ops in doc["paths"].items() for method in ops
            if path.startswith("/api/admin/")]


@pytest.mark.parametrize("role", ["commander", "dept_lead", "responder", "inspector"])
async def test_non_admins_cannot_call_any_admin_route(muster: Muster, role: str) -> None:
    s = await muster.session(role)
    victim = await muster.create_user()
    operations = admin_operations(muster)
    assert len(operations) >= 7
    bodies = {("POST", "/api/admin/departments"): {"name": "x", "kind": "county"},
              ("PATCH", "/api/admin/departments/{department_id}"): {"name": "renamed"},
              ("PATCH", "/api/admin/users/{user_id}"): {"disabled": True},
              ("POST", "/api/admin/users"): {"username": "intruder", "display_name": "x",
                                             "password": "long-enough-1", "roles": ["admin"]}}
    for method, path in operations:
        concrete = re.sub(r"{user_id}", victim["id"], path)
        concrete = re.sub(r"{device_id}", s.device_id, concrete)
        concrete = re.sub(r"{\w+}", "someid", concrete)
        body = bodies.get((method, path))
        assert body is not None or method in ("GET", "DELETE"), f"add a valid body for {method} {path}"
        status, resp = await muster.request(method, concrete, s, json=body) if body else \
            await muster.request(method, concrete, s)
        assert status == 403, (method, concrete, resp)
        assert resp["error"]["code"] == "auth.forbidden"
    # nothing changed, and each denial is on record
    assert await muster.kernel.storage.get_user_by_username("intruder") is None
    assert not (await muster.kernel.storage.get_user(victim["id"])).disabled  # type: ignore[union-attr]
    denials = await muster.kernel.storage.list_audit_records(chain=f"user:{s.user_id}", action="permission.denied")
    assert len(denials) == len(operations)


async def test_admin_routes_need_a_token(muster: Muster) -> None:
    for method, path in admin_operations(muster):
        status, body = await muster.request(method, re.sub(r"{\w+}", "someid", path))
        assert status == 401 and body["error"]["code"] == "auth.unauthenticated"
