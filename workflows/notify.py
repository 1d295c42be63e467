"""Notices that leave the app: urges (催办), escalations (督办) and assignments (交办) sent to a
county's SMS or voice gateway through a pluggable `Notifier`.

The one real channel is a signed outbound webhook. `WebhookNotifier.send` only queues a durable
scheduler job (kind ``notify.webhook``); the job POSTs the notice and retries with backoff, so a
gateway that is down, slow or restarting loses nothing, and a restart of Muster loses nothing
either. What still fails after the retries, or is refused outright, becomes a `DeadLetter`.

Signature scheme (what a receiver checks)
-----------------------------------------
Every POST carries these headers::

    Content-Type:     application/json
    Muster-Event:     task.urged
    Muster-Delivery:  <delivery id: the same on every retry of one notice>
    Muster-Timestamp: <unix time in whole seconds when this attempt was signed>
    Muster-Signature: sha256=<hex HMAC-SHA256>

The HMAC key is the shared secret (UTF-8) and the signed message is the timestamp header's
ASCII digits, one ``.``, then the raw request body bytes exactly as received::

    signature = hex(HMAC_SHA256(secret, f"{timestamp}.".encode() + raw_body))

A receiver recomputes it over the bytes it read (before parsing the JSON), compares in constant
time, and rejects a timestamp more than 5 minutes away from its own clock so a captured request
cannot be replayed later; `verify_signature` does exactly this. Because retries keep the
delivery id (also the body's ``id``), a receiver that answered 2xx but whose reply got lost may
see a notice twice: it should treat the delivery id as an idempotency key.

The body is ``{"id", "event", "title", "body", "data", "recipients", "at", "attempt"}``, where
``recipients`` is a list of ``{"user_id", "username", "display_name", "phone"?}`` and ``at`` is
the notice's time in ms since the epoch.

Answers: 2xx is delivered. A network error, a timeout, 5xx, 408 or 429 is retried. Any other
status (3xx included: redirects are not followed) is a permanent failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import aiohttp

from server.ids import new_id, now_ms
from server.logging import get_logger
from server.scheduler import Scheduler
from server.storage.records import DeadLetter, Job

__all__ = [
    "WEBHOOK_JOB_KIND",
    "DeadLetterSink",
    "FanoutNotifier",
    "Notice",
    "Notifier",
    "NullNotifier",
    "RecipientLookup",
    "WebhookNotifier",
    "default_backoff",
    "sign",
    "verify_signature",
]

WEBHOOK_JOB_KIND: Final = "notify.webhook"
SIGNATURE_PREFIX: Final = "sha256="
# Only these fields of a recipient leave the building: the lookup may hand over richer user
# records, and a third-party gateway needs no more than whom to reach and how.
RECIPIENT_FIELDS: Final = ("user_id", "username", "display_name", "phone")

_BACKOFF_STEPS_MS: Final = (10_000, 30_000, 120_000, 600_000, 1_800_000)
_BACKOFF_CAP_MS: Final = 3_600_000
# How much of a receiver's error answer is kept in a dead letter: enough to read its reason.
_ERROR_SNIPPET_CHARS: Final = 200
# Jitter is about spreading load, not secrecy, but SystemRandom keeps linters and auditors calm.
_jitter = random.SystemRandom()

log = get_logger("muster.notify")


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell some people outside the app, e.g. "催办：东沟水库巡查（第2次）"."""

    event: str  # "task.assigned" | "task.urged" | "task.supervised" | ... (free text)
    recipients: tuple[str, ...]  # user ids
    title: str  # short human text, Chinese first
    body: str
    data: dict[str, Any]  # ids: task_id, case_type, case_id, deadline...
    at: int  # ms since the epoch


class Notifier(Protocol):
    """Something that gets a notice to people. `send` must not raise for delivery problems:
    an implementation queues and retries, and records what it finally gives up on."""

    async def send(self, notice: Notice) -> None: ...


class DeadLetterSink(Protocol):
    """Where notices that could not be delivered are kept (the workflow store)."""

    async def add_dead_letter(self, letter: DeadLetter) -> None: ...


# Given user ids, each recipient's {"user_id", "username", "display_name", "phone"?}.
RecipientLookup = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]


class NullNotifier:
    """Sends nothing: the notifier when no outbound channel is configured."""

    async def send(self, notice: Notice) -> None:
        return None


class FanoutNotifier:
    """Sends every notice to several notifiers at once; one that fails does not stop the others."""

    def __init__(self, *notifiers: Notifier) -> None:
        self._notifiers = notifiers

    async def send(self, notice: Notice) -> None:
        await asyncio.gather(*(self._send_one(notifier, notice) for notifier in self._notifiers))

    @staticmethod
    async def _send_one(notifier: Notifier, notice: Notice) -> None:
        try:
            await notifier.send(notice)
        except Exception:
            # A notifier should not raise, but one that does must not cost the others their notice.
            log.exception("notifier failed", notifier=type(notifier).__name__, notice_event=notice.event)


def default_backoff(attempt: int) -> int:
    """Delay in ms before retrying after failed attempt number `attempt` (1-based): 10 s, 30 s,
    2 min, 10 min, 30 min, then 1 h, each with ±20 % jitter so retries from many notices spread."""
    base = _BACKOFF_STEPS_MS[attempt - 1] if 1 <= attempt <= len(_BACKOFF_STEPS_MS) else _BACKOFF_CAP_MS
    return int(min(base, _BACKOFF_CAP_MS) * _jitter.uniform(0.8, 1.2))


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``Muster-Signature`` header value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    message = f"{timestamp}.".encode("ascii") + body
    return SIGNATURE_PREFIX + hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: int | str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance_s: int = 300,
) -> bool:
    """True when `signature` (the ``Muster-Signature`` header) signs `body` (raw request bytes) at
    `timestamp` (the ``Muster-Timestamp`` header) with `secret`, and `timestamp` is within
    `tolerance_s` seconds of `now` (unix seconds) either way, so an old request cannot be replayed."""
    ts_text = str(timestamp).strip()
    if not (ts_text.isascii() and ts_text.isdigit()) or abs(now - int(ts_text)) > tolerance_s:
        return False
    expected = sign(secret, ts_text, body)
    return hmac.compare_digest(expected.encode("utf-8"), signature.strip().encode("utf-8"))


class _AttemptFailed(Exception):
    """One POST did not deliver. `summary` is safe to log; `detail` adds the start of the receiver's
    answer, which may echo the notice back, so it goes only into the dead letter."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = f"{summary}: {detail}" if detail else summary


class _Retry(_AttemptFailed):
    """An attempt failed in a way worth trying again (network, timeout, 5xx, 408, 429)."""


class _Refused(_AttemptFailed):
    """The receiver refused the notice for good (any other non-2xx answer)."""


class WebhookNotifier:
    """Delivers notices as signed JSON POSTs to one URL, durably, with retries and dead letters.

    `send` queues a scheduler job and returns at once; the job (registered on `scheduler` here,
    so create one notifier per scheduler) does the POST. The delivery id is the job id, and the
    attempt number is the job's claim count, which the job store keeps across re-arming: the
    queued payload never needs rewriting, and a node that dies mid-POST still counts its try.
    `start` / `stop` open and close the HTTP session; jobs that come due before `start` fail and
    are retried by the scheduler.
    """

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        scheduler: Scheduler,
        dead_letters: DeadLetterSink,
        recipients: RecipientLookup,
        max_attempts: int = 6,
        timeout: float = 10.0,
        clock: Callable[[], int] = now_ms,
        backoff_ms: Callable[[int], int] = default_backoff,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the webhook url must be an absolute http(s) url")
        self._url = url
        # Logged instead of the url: a query string may carry a gateway credential.
        self._target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._secret = secret.encode("utf-8")
        self._scheduler = scheduler
        self._dead_letters = dead_letters
        self._recipients = recipients
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._clock = clock
        self._backoff_ms = backoff_ms
        self._session: aiohttp.ClientSession | None = None
        scheduler.register(WEBHOOK_JOB_KIND, self._deliver)

    def __repr__(self) -> str:
        return f"WebhookNotifier(target={self._target!r})"

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))

    async def stop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(self, notice: Notice) -> None:
        """Queue the notice for delivery, due now, and return. Never raises for delivery or queueing
        trouble (the workflow step that triggered it has already happened); such trouble is logged.
        Recipients are looked up now, so every retry sends the same people. `data` that is not
        JSON-serialisable raises TypeError here: that is a caller's bug, not a delivery problem."""
        if not notice.recipients:
            log.debug("notice without recipients; not sent", notice_event=notice.event)
            return
        delivery_id = new_id()
        delivery = {
            "id": delivery_id,
            "event": notice.event,
            "title": notice.title,
            "body": notice.body,
            "data": notice.data,
            "recipients": await self._lookup(notice.recipients),
            "at": notice.at,
        }
        # A notice whose data cannot be JSON is a bug in the caller: fail loudly, not on every retry.
        json.dumps(delivery, ensure_ascii=False)
        try:
            await self._scheduler.schedule(
                WEBHOOK_JOB_KIND, job_id=delivery_id, due_at=self._clock(), payload={"delivery": delivery}
            )
        except Exception:
            log.exception("could not queue webhook notice", notice_event=notice.event, delivery_id=delivery_id)
            return
        log.debug("webhook notice queued", notice_event=notice.event, delivery_id=delivery_id)

    async def _lookup(self, user_ids: tuple[str, ...]) -> list[dict[str, Any]]:
        try:
            found = await self._recipients(list(user_ids))
        except Exception:
            # Bare ids still let the gateway's own directory reach people; dropping the notice would not.
            log.exception("recipient lookup failed; sending bare user ids", count=len(user_ids))
            return [{"user_id": user_id} for user_id in user_ids]
        return [{key: person[key] for key in RECIPIENT_FIELDS if person.get(key) is not None} for person in found]

    async def _deliver(self, job: Job) -> int | None:
        """The scheduler job: one POST; returns when to try again, or None when done either way."""
        delivery: dict[str, Any] = job.payload["delivery"]
        # The store counts claims, this one included; 0 only if a store forgot to.
        attempt = max(1, job.attempts)
        body = {**delivery, "attempt": attempt}
        context = {"notice_event": delivery["event"], "delivery_id": delivery["id"], "attempt": attempt}
        try:
            status = await self._post(body)
        except _Retry as exc:
            if attempt < self._max_attempts:
                delay = max(0, self._backoff_ms(attempt))
                log.info(
                    "webhook delivery failed; will retry",
                    target=self._target,
                    error=exc.summary,
                    retry_in_ms=delay,
                    **context,
                )
                return self._clock() + delay
            await self._give_up(body, attempt, exc, context)
            return None
        except _Refused as exc:
            await self._give_up(body, attempt, exc, context)
            return None
        log.info("webhook delivered", target=self._target, status=status, **context)
        return None

    async def _post(self, body: dict[str, Any]) -> int:
        """POST one attempt; the status on 2xx, else raise `_Retry` or `_Refused`."""
        if self._session is None:
            raise RuntimeError("WebhookNotifier used before start()")
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = self._clock() // 1000
        headers = {
            "Content-Type": "application/json",
            "Muster-Event": body["event"],
            "Muster-Delivery": body["id"],
            "Muster-Timestamp": str(timestamp),
            "Muster-Signature": sign(self._secret, timestamp, raw),
        }
        try:
            # Redirects are refused: following one would hand a signed notice to another address.
            async with self._session.post(self._url, data=raw, headers=headers, allow_redirects=False) as response:
                status = response.status
                if 200 <= status < 300:
                    return status
                snippet = await _read_snippet(response)
        except TimeoutError as exc:
            raise _Retry(f"timed out after {self._timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status in (408, 429):
            raise _Retry(f"HTTP {status}", snippet)
        raise _Refused(f"HTTP {status}", snippet)

    async def _give_up(
        self, body: dict[str, Any], attempts: int, failure: _AttemptFailed, context: dict[str, Any]
    ) -> None:
        letter = DeadLetter(
            id=new_id(),
            channel="webhook",
            event=body["event"],
            payload=body,
            attempts=attempts,
            last_error=failure.detail,
            created_at=self._clock(),
        )
        # Not caught: if the dead letter cannot be written the scheduler retries the job, which
        # re-sends (receivers deduplicate on the delivery id) rather than losing the notice silently.
        await self._dead_letters.add_dead_letter(letter)
        log.warning(
            "webhook delivery abandoned; dead letter written",
            target=self._target,
            error=failure.summary,
            permanent=isinstance(failure, _Refused),
            dead_letter_id=letter.id,
            **context,
        )


async def _read_snippet(response: aiohttp.ClientResponse) -> str:
    """The start of a receiver's error answer (its stated reason), one line, or "" if unreadable."""
    try:
        raw = await response.content.read(_ERROR_SNIPPET_CHARS * 4)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    text = raw.decode("utf-8", errors="replace")[:_ERROR_SNIPPET_CHARS]
    return " ".join(text.split())
