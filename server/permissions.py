"""The one place that answers "may this user do this to that"; denials are audited.

Rules are pure functions of the principal and the resource, kept in a table. The
kernel registers its own; domains register theirs at start (for example "room.send"
checks membership held in the resource they pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.audit.service import AuditLog, user_chain
from server.auth.service import Principal
from server.errors import Forbidden
from server.logging import get_logger

Rule = Callable[[Principal, Any], bool]
log = get_logger("muster.permissions")


def has_role(*roles: str) -> Rule:
    def rule(principal: Principal, _resource: Any) -> bool:
        return principal.user.has_role(*roles)

    rule.__name__ = "has_role(" + ",".join(roles) + ")"
    return rule


def signed_in(_principal: Principal, _resource: Any) -> bool:
    return True


def owns_resource(principal: Principal, resource: Any) -> bool:
    """The resource (a record with `user_id`) belongs to the asking user."""
    return getattr(resource, "user_id", None) == principal.user_id


KERNEL_RULES: dict[str, Rule] = {
    "org.read": signed_in,  # the department tree and the user directory
    "org.manage": has_role("admin"),  # departments, users, their devices
    "audit.read": has_role("admin", "inspector"),
    "audit.verify": has_role("admin", "inspector"),
    "device.revoke_own": owns_resource,
}


class Permissions:
    def __init__(self, audit: AuditLog, rules: dict[str, Rule] | None = None) -> None:
        self._audit = audit
        self._rules: dict[str, Rule] = dict(KERNEL_RULES if rules is None else rules)
        # Actions whose rule judges a particular thing (a room, a device) rather than the role alone.
        self._on_resource: set[str] = {"device.revoke_own"} if rules is None else set()

    def register(self, action: str, rule: Rule, *, on_resource: bool = True) -> None:
        """Add a rule; `on_resource=False` for rules that look at the user alone (listed by /api/me)."""
        if action in self._rules:
            raise ValueError(f"permission rule for {action!r} is already registered")
        self._rules[action] = rule
        if on_resource:
            self._on_resource.add(action)

    @property
    def role_actions(self) -> list[str]:
        """Actions decided by who the user is, without a particular resource."""
        return sorted(a for a in self._rules if a not in self._on_resource)

    @property
    def actions(self) -> list[str]:
        return sorted(self._rules)

    def allows(self, principal: Principal, action: str, resource: Any = None) -> bool:
        """Pure check: no I/O. Unknown actions are denied."""
        rule = self._rules.get(action)
        if rule is None:
            log.error("no permission rule for action", action=action)
            return False
        return bool(rule(principal, resource))

    async def require(
        self,
        principal: Principal,
        action: str,
        resource: Any = None,
        *,
        subject_type: str = "",
        subject_id: str = "",
        code: str = "auth.forbidden",
        message: str | None = None,
    ) -> None:
        """Raise Forbidden (and audit the denial) unless the principal may do `action`."""
        if self.allows(principal, action, resource):
            return
        await self._audit.record(
            chain=user_chain(principal.user_id), action="permission.denied", subject_type=subject_type or "action",
            subject_id=subject_id or action, actor_id=principal.user_id, device_id=principal.device_id,
            details={"action": action},
        )
        raise Forbidden(message or f"you may not {action}", code=code)
