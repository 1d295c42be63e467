"""Access tokens: Muster's own (HS256) and, when configured, an external identity provider's (RS256/ES256)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from server.errors import Unauthorized
from server.settings import AuthSettings, SsoSettings


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str | None
    username: str | None
    device_id: str | None
    external_session: str | None
    expires_at: int
    external: bool


class TokenService:
    """Issues and checks access tokens; knows nothing of storage."""

    def __init__(self, auth: AuthSettings, sso: SsoSettings) -> None:
        self._auth = auth
        self._sso = sso

    def issue_access(self, *, user_id: str, device_id: str, now_s: int) -> tuple[str, int]:
        expires = now_s + self._auth.access_ttl
        claims = {
            "iss": self._auth.issuer,
            "aud": self._auth.audience,
            "sub": user_id,
            "did": device_id,
            "iat": now_s,
            "exp": expires,
            "jti": secrets.token_urlsafe(12),
        }
        token = jwt.encode(claims, self._auth.jwt_secret, algorithm="HS256")
        return token, expires

    def verify_access(self, token: str) -> AccessClaims:
        """Check signature, expiry, issuer and audience; raise Unauthorized with a precise code."""
        if not token or len(token) > 8192:
            raise Unauthorized("missing or oversized access token", code="auth.invalid_token")
        alg = _peek_alg(token)
        if self._sso.issuer and alg in self._sso.algorithms:
            # Only the identity provider signs with a public-key algorithm; the issuer is
            # checked again when the signature is verified.
            try:
                unverified = jwt.decode(token, options={"verify_signature": False})
            except jwt.PyJWTError:
                raise Unauthorized("malformed access token", code="auth.invalid_token") from None
            if unverified.get("iss") == self._sso.issuer:
                return self._verify_external(token)
        if alg != "HS256":
            raise Unauthorized(f"token algorithm {alg!r} is not accepted", code="auth.invalid_token")
        claims = self._decode(token, self._auth.jwt_secret, ["HS256"], self._auth.issuer, self._auth.audience)
        for name in ("sub", "did"):
            if not isinstance(claims.get(name), str):
                raise Unauthorized(f"token lacks the {name} claim", code="auth.invalid_token")
        return AccessClaims(
            user_id=claims["sub"], username=None, device_id=claims["did"], external_session=None,
            expires_at=int(claims["exp"]), external=False,
        )

    def _verify_external(self, token: str) -> AccessClaims:
        claims = self._decode(
            token, self._sso.public_key, list(self._sso.algorithms), self._sso.issuer, self._sso.audience
        )
        username = claims.get(self._sso.username_claim)
        if not isinstance(username, str) or not username:
            raise Unauthorized(
                f"external token lacks the {self._sso.username_claim} claim", code="auth.invalid_token"
            )
        session = claims.get("sid") if isinstance(claims.get("sid"), str) else None
        if session is None:
            session = "sso:" + hashlib.sha256(f"{claims.get('iss')}|{claims.get('sub')}".encode()).hexdigest()[:24]
        return AccessClaims(
            user_id=None, username=username, device_id=None, external_session=session[:128],
            expires_at=int(claims["exp"]), external=True,
        )

    @staticmethod
    def _decode(token: str, key: str, algorithms: list[str], issuer: str, audience: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=algorithms, issuer=issuer, audience=audience,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]}, leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token has expired", code="auth.token_expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("access token signature is invalid", code="auth.invalid_token") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"access token refused: {exc}", code="auth.invalid_token") from None
        return claims


def _peek_alg(token: str) -> str:
    """The `alg` of a JWT header, read without verifying (PyJWT then parses the token once, not twice)."""
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        raise Unauthorized("malformed access token", code="auth.invalid_token") from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise Unauthorized("malformed access token", code="auth.invalid_token")
    return str(header["alg"])


def new_refresh_secret(device_id: str) -> tuple[str, str]:
    """A refresh token `<device_id>.<secret>` and the sha256 of its secret, which is all that is stored."""
    secret = secrets.token_urlsafe(32)
    return f"{device_id}.{secret}", hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
