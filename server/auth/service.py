"""Sign-in, token refresh, logout and devices; every action is audited on the user's chain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from server.audit.service import AuditLog, user_chain
from server.auth.passwords import Passwords
from server.auth.tokens import AccessClaims, TokenService, hash_secret, new_refresh_secret
from server.counters import Counters
from server.errors import BadRequest, Forbidden, NotFound, TooManyRequests, Unauthorized
from server.ids import new_id, now_ms
from server.settings import AuthSettings
from server.storage.ports import Storage
from server.storage.records import Device, DeviceKind, User

DeviceRevoked = Callable[[Device], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user on one of their devices."""

    user: User
    device: Device
    external: bool = False

    @property
    def user_id(self) -> str:
        return self.user.id

    @property
    def device_id(self) -> str:
        return self.device.id


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    device: Device
    access_token: str
    access_expires_at: int
    refresh_token: str
    refresh_expires_at: int


class AuthService:
    def __init__(
        self,
        *,
        storage: Storage,
        audit: AuditLog,
        tokens: TokenService,
        passwords: Passwords,
        counters: Counters,
        settings: AuthSettings,
    ) -> None:
        self._storage = storage
        self._audit = audit
        self._tokens = tokens
        self._passwords = passwords
        self._counters = counters
        self._settings = settings
        self._on_revoked: list[DeviceRevoked] = []

    def on_device_revoked(self, callback: DeviceRevoked) -> None:
        """Called after a device is revoked (the gateway disconnects its sockets)."""
        self._on_revoked.append(callback)

    # -- sign in -------------------------------------------------------------------

    async def login(
        self,
        *,
        username: str,
        password: str,
        device_name: str,
        device_kind: DeviceKind,
        device_id: str | None,
        address: str,
    ) -> Session:
        account_key, address_key = f"login:user:{username.lower()}", f"login:addr:{address}"
        window = self._settings.failure_window
        # Count the attempt before checking the password: simultaneous guesses on several
        # nodes then cannot all slip in under the limit. A success takes its count back.
        counts = (await self._counters.incr(account_key, window), await self._counters.incr(address_key, window))
        limits = (self._settings.max_failures_per_account, self._settings.max_failures_per_address)
        for key, count, limit in zip((account_key, address_key), counts, limits, strict=True):
            if count > limit:
                _, retry_after = await self._counters.get(key)
                raise TooManyRequests(
                    "too many failed sign-ins; try again later", code="auth.throttled",
                    headers={"Retry-After": str(max(1, retry_after))},
                )
        user = await self._storage.get_user_by_username(username)
        password_ok = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not password_ok:
            if user is not None:
                await self._audit.record(
                    chain=user_chain(user.id), action="auth.login_failed", subject_type="user",
                    subject_id=user.id, actor_id=None, details={"address": address},
                )
            raise Unauthorized("wrong username or password", code="auth.bad_credentials")
        if user.disabled:
            await self._audit.record(
                chain=user_chain(user.id), action="auth.login_refused", subject_type="user", subject_id=user.id,
                actor_id=user.id, details={"address": address, "reason": "disabled"},
            )
            raise Forbidden("this account is disabled", code="auth.account_disabled")
        await self._counters.reset(account_key)
        await self._counters.decr(address_key)

        now = now_ms()
        device = await self._storage.get_device(device_id) if device_id else None
        if device is None or device.user_id != user.id or device.revoked:
            device = Device(id=new_id(), user_id=user.id, name=device_name, kind=device_kind,
                            created_at=now, last_seen_at=now)
            await self._storage.create_device(device)
        session = await self._issue(user, device, expected_hash=None)
        await self._audit.record(
            chain=user_chain(user.id), action="auth.login", subject_type="device", subject_id=device.id,
            actor_id=user.id, device_id=device.id,
            details={"address": address, "device_name": device.name, "device_kind": device.kind},
        )
        return session

    async def refresh(self, refresh_token: str, *, address: str) -> Session:
        device_id, _, secret = refresh_token.partition(".")
        device = await self._storage.get_device(device_id) if device_id and secret else None
        if device is None or device.revoked:
            raise Unauthorized("refresh token is not valid", code="auth.invalid_refresh")
        presented = hash_secret(secret)
        if device.refresh_hash != presented:
            if device.refresh_prev_hash == presented:
                # An old secret came back: someone kept a copy. End the device's session.
                await self.revoke_device(device, actor_id=None, reason="refresh_token_reuse")
            raise Unauthorized("refresh token is not valid", code="auth.invalid_refresh")
        if device.refresh_expires_at is not None and device.refresh_expires_at < now_ms():
            raise Unauthorized("refresh token has expired", code="auth.refresh_expired")
        user = await self._storage.get_user(device.user_id)
        if user is None or user.disabled:
            raise Unauthorized("this account cannot sign in", code="auth.account_disabled")
        session = await self._issue(user, device, expected_hash=presented)
        await self._audit.record(
            chain=user_chain(user.id), action="auth.refresh", subject_type="device", subject_id=device.id,
            actor_id=user.id, device_id=device.id, details={"address": address},
        )
        return session

    async def _issue(self, user: User, device: Device, *, expected_hash: str | None) -> Session:
        now = now_ms()
        refresh_token, refresh_hash = new_refresh_secret(device.id)
        refresh_expires = now + self._settings.refresh_ttl * 1000
        if not await self._storage.set_refresh(
            device.id, expected_hash=expected_hash, new_hash=refresh_hash, expires_at=refresh_expires, at=now
        ):
            raise Unauthorized("refresh token is not valid", code="auth.invalid_refresh")
        access, access_exp = self._tokens.issue_access(user_id=user.id, device_id=device.id, now_s=now // 1000)
        return Session(user=user, device=device, access_token=access, access_expires_at=access_exp * 1000,
                       refresh_token=refresh_token, refresh_expires_at=refresh_expires)

    # -- who is asking -------------------------------------------------------------

    async def authenticate(self, token: str) -> Principal:
        """Turn an access token into a Principal, refusing disabled users and revoked devices."""
        claims = self._tokens.verify_access(token)
        if claims.external:
            return await self._external_principal(claims)
        assert claims.user_id is not None and claims.device_id is not None
        return await self.authenticate_ids(claims.user_id, claims.device_id)

    async def authenticate_ids(self, user_id: str, device_id: str) -> Principal:
        """The Principal for a user on a device, refusing disabled users and revoked devices."""
        user, device = await asyncio.gather(self._storage.get_user(user_id), self._storage.get_device(device_id))
        if user is None or device is None or device.user_id != user.id:
            raise Unauthorized("token refers to an unknown user or device", code="auth.invalid_token")
        if device.revoked:
            raise Unauthorized("this device has been signed out", code="auth.device_revoked")
        if user.disabled:
            raise Unauthorized("this account is disabled", code="auth.account_disabled")
        return Principal(user=user, device=device)

    def token_expiry(self, token: str) -> int:
        """Expiry (epoch seconds) of an access token that `authenticate` accepted."""
        return self._tokens.verify_access(token).expires_at

    async def _external_principal(self, claims: AccessClaims) -> Principal:
        assert claims.username is not None and claims.external_session is not None
        user = await self._storage.get_user_by_username(claims.username)
        if user is None:
            raise Unauthorized("no Muster account for this identity", code="auth.unknown_user")
        if user.disabled:
            raise Unauthorized("this account is disabled", code="auth.account_disabled")
        device = await self._storage.find_external_device(user.id, claims.external_session)
        if device is None:
            now = now_ms()
            device = Device(id=new_id(), user_id=user.id, name="SSO", kind="console", created_at=now,
                            last_seen_at=now, external_session=claims.external_session)
            await self._storage.create_device(device)
            await self._audit.record(
                chain=user_chain(user.id), action="auth.sso_device", subject_type="device",
                subject_id=device.id, actor_id=user.id, device_id=device.id, details={},
            )
        elif device.revoked:
            raise Unauthorized("this device has been signed out", code="auth.device_revoked")
        return Principal(user=user, device=device, external=True)

    # -- devices ---------------------------------------------------------------------

    async def logout(self, principal: Principal) -> None:
        await self.revoke_device(principal.device, actor_id=principal.user_id, actor_device_id=principal.device_id,
                                 reason="logout")

    async def list_devices(self, user_id: str) -> list[Device]:
        return await self._storage.list_devices(user_id)

    async def get_device_of(self, user_id: str | None, device_id: str) -> Device:
        device = await self._storage.get_device(device_id)
        if device is None or (user_id is not None and device.user_id != user_id):
            raise NotFound("no such device", code="device.not_found")
        return device

    async def revoke_device(
        self,
        device: Device,
        *,
        actor_id: str | None,
        actor_device_id: str | None = None,
        reason: str,
    ) -> None:
        """Sign a device out: its refresh token dies, its access tokens are refused, its sockets close."""
        if await self._storage.revoke_device(device.id, at=now_ms()):
            await self._audit.record(
                chain=user_chain(device.user_id), action="auth.device_revoked", subject_type="device",
                subject_id=device.id, actor_id=actor_id, device_id=actor_device_id, details={"reason": reason},
            )
        for callback in self._on_revoked:
            await callback(device)

    async def change_password(self, principal: Principal, *, current: str, new: str) -> None:
        if not await self._passwords.verify(principal.user.password_hash, current):
            raise Forbidden("current password is wrong", code="auth.bad_credentials")
        await self.set_password(principal.user, new, actor_id=principal.user_id, actor_device_id=principal.device_id)

    async def hash_new_password(self, password: str) -> str:
        """Check a password chosen for an account and return its hash."""
        if len(password) < self._settings.password_min_length:
            raise BadRequest(
                f"password must have at least {self._settings.password_min_length} characters",
                code="auth.weak_password",
            )
        return await self._passwords.hash(password)

    async def set_password(
        self, user: User, password: str, *, actor_id: str | None, actor_device_id: str | None = None
    ) -> User:
        updated = replace(user, password_hash=await self.hash_new_password(password), updated_at=now_ms())
        await self._storage.update_user(updated)
        await self._audit.record(
            chain=user_chain(user.id), action="auth.password_changed", subject_type="user", subject_id=user.id,
            actor_id=actor_id, device_id=actor_device_id, details={},
        )
        return updated
