"""The outbound notifier against a real local HTTP receiver, with a real Scheduler on real SQLite.

Retries are driven by calling `scheduler.run_due()` with a backoff of 0, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from server.ids import now_ms
from server.scheduler import Scheduler
from server.storage.records import DeadLetter
from server.storage.sqlite import SqliteStorage
from workflows.notify import (
    WEBHOOK_JOB_KIND,
    FanoutNotifier,
    Notice,
    Notifier,
    NullNotifier,
    WebhookNotifier,
    default_backoff,
    sign,
    verify_signature,
)

SECRET = "webhook-secret-7f3a9c"
BODY_TEXT = "东沟水库巡查任务已超期，请于今日18:00前反馈进展。"
PEOPLE = {
    "u1": {
        "user_id": "u1",
        "username": "zhangwei",
        "display_name": "张伟",
        "phone": "13800000001",
        "password_hash": "must-not-leave",
    },
    "u2": {"user_id": "u2", "username": "lina", "display_name": "李娜"},
}


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any]
    valid: bool


@dataclass
class Receiver:
    """A webhook receiver on a real loopback port: verifies each signature and answers from a script."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    stall: int = 0  # how many of the next requests hang until `release` is set
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        valid = verify_signature(
            SECRET,
            request.headers.get("Muster-Timestamp", ""),
            raw,
            request.headers.get("Muster-Signature", ""),
            now=time.time(),
        )
        self.received.append(Received(dict(request.headers), raw, json.loads(raw), valid))
        if self.stall > 0:
            self.stall -= 1
            await self.release.wait()
        if not valid:
            return web.Response(status=401, text="bad signature")
        status = self.statuses.pop(0) if self.statuses else 200
        if 300 <= status < 400:
            raise web.HTTPFound(location="/elsewhere")
        return web.Response(status=status, text=f"answer {status}")


class DeadLetters:
    """The two dead-letter methods of the workflow store, in memory."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        return list(reversed(self.letters))[:limit]


async def lookup(user_ids: Sequence[str]) -> list[dict[str, Any]]:
    return [PEOPLE[user_id] for user_id in user_ids if user_id in PEOPLE]


def notice(n: int = 2, recipients: tuple[str, ...] = ("u1", "u2")) -> Notice:
    return Notice(
        event="task.urged",
        recipients=recipients,
        title=f"催办：东沟水库巡查（第{n}次）",
        body=BODY_TEXT,
        data={"task_id": "t1", "case_type": "incident", "case_id": "i1", "deadline": 1_700_000_000_000},
        at=1_700_000_000_000 + n,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def receiver(aiohttp_server: Callable[[web.Application], Awaitable[Any]]) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    yield rec
    rec.release.set()  # let a stalled handler finish so the server closes promptly


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(tmp_path / "x.sqlite3")
    await store.open()
    yield store
    await store.close()


@dataclass
class Node:
    scheduler: Scheduler
    notifier: WebhookNotifier
    dead: DeadLetters

    async def drain(self, rounds: int = 10) -> int:
        """Run due jobs until none is left (backoff is 0, so a retry is due at once)."""
        ran = 0
        for _ in range(rounds):
            n = await self.scheduler.run_due()
            if n == 0:
                break
            ran += n
        return ran


@pytest.fixture
async def make_node(storage: SqliteStorage) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    started: list[WebhookNotifier] = []

    async def make(url: str, *, store: SqliteStorage | None = None, **kwargs: Any) -> Node:
        scheduler = Scheduler(store or storage)
        dead = DeadLetters()
        options: dict[str, Any] = {"max_attempts": 6, "timeout": 5.0, "backoff_ms": lambda attempt: 0, **kwargs}
        notifier = WebhookNotifier(
            url=url, secret=SECRET, scheduler=scheduler, dead_letters=dead, recipients=lookup, **options
        )
        await notifier.start()
        started.append(notifier)
        return Node(scheduler, notifier, dead)

    yield make
    for notifier in started:
        await notifier.stop()


async def test_a_notice_is_delivered_once_with_a_valid_signature_and_the_right_headers(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]], storage: SqliteStorage
) -> None:
    node = await make_node(receiver.url)
    await node.notifier.send(notice())
    assert receiver.received == []  # send only queues

    assert await node.drain() == 1
    assert await node.drain() == 0
    [got] = receiver.received
    assert got.valid
    body = got.body
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Muster-Event"] == "task.urged"
    assert got.headers["Muster-Delivery"] == body["id"]
    assert got.headers["Muster-Signature"] == sign(SECRET, got.headers["Muster-Timestamp"], got.raw)
    assert abs(int(got.headers["Muster-Timestamp"]) - time.time()) < 300
    assert body == {
        "id": body["id"],
        "event": "task.urged",
        "title": "催办：东沟水库巡查（第2次）",
        "body": BODY_TEXT,
        "data": {"task_id": "t1", "case_type": "incident", "case_id": "i1", "deadline": 1_700_000_000_000},
        # Only the contact fields leave: no password hash, no invented phone for u2.
        "recipients": [
            {"user_id": "u1", "username": "zhangwei", "display_name": "张伟", "phone": "13800000001"},
            {"user_id": "u2", "username": "lina", "display_name": "李娜"},
        ],
        "at": 1_700_000_000_002,
        "attempt": 1,
    }
    assert node.dead.letters == []
    assert await storage.get_job(body["id"]) is None


async def test_500_twice_then_200_delivers_the_same_delivery_id_three_times(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]]
) -> None:
    receiver.statuses = [500, 500]
    node = await make_node(receiver.url)
    await node.notifier.send(notice())

    assert await node.drain() == 3
    assert len(receiver.received) == 3
    assert all(got.valid for got in receiver.received)
    assert len({got.body["id"] for got in receiver.received}) == 1
    assert len({got.headers["Muster-Delivery"] for got in receiver.received}) == 1
    assert [got.body["attempt"] for got in receiver.received] == [1, 2, 3]
    assert node.dead.letters == []


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (429, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (410, False),
        (422, False),
        (302, False),
    ],
)
async def test_which_answers_are_retried(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]], status: int, retried: bool
) -> None:
    receiver.statuses = [status]
    node = await make_node(receiver.url)
    await node.notifier.send(notice())
    await node.drain()
    if retried:
        assert [got.body["attempt"] for got in receiver.received] == [1, 2]
        assert node.dead.letters == []
    else:
        # Not retried, and a redirect is not followed to wherever it points.
        assert [got.body["attempt"] for got in receiver.received] == [1]
        [letter] = node.dead.letters
        assert letter.last_error.startswith(f"HTTP {status}")


async def test_a_permanent_400_gives_a_dead_letter_at_once(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]], storage: SqliteStorage
) -> None:
    receiver.statuses = [400]
    node = await make_node(receiver.url)
    await node.notifier.send(notice())

    assert await node.drain() == 1
    [got] = receiver.received
    [letter] = node.dead.letters
    assert letter.channel == "webhook"
    assert letter.event == "task.urged"
    assert letter.attempts == 1
    assert letter.last_error == "HTTP 400: answer 400"  # the receiver's stated reason is kept
    assert letter.payload == got.body  # exactly what was sent, delivery id included
    assert await storage.get_job(got.body["id"]) is None


async def test_a_receiver_that_is_down_exhausts_the_attempts(
    make_node: Callable[..., Awaitable[Node]], storage: SqliteStorage
) -> None:
    node = await make_node(f"http://127.0.0.1:{closed_port()}/hook", max_attempts=3)
    await node.notifier.send(notice())

    assert await node.drain() == 3
    [letter] = node.dead.letters
    assert letter.attempts == 3
    assert letter.payload["attempt"] == 3
    assert "ClientConnectorError" in letter.last_error
    assert await storage.get_job(letter.payload["id"]) is None


async def test_a_timeout_counts_as_a_retry(receiver: Receiver, make_node: Callable[..., Awaitable[Node]]) -> None:
    receiver.stall = 1  # the first request hangs until the test ends
    node = await make_node(receiver.url, timeout=0.2)
    await node.notifier.send(notice())

    assert await node.scheduler.run_due() == 1
    assert len(receiver.received) == 1
    assert await node.scheduler.run_due() == 1  # the retry is answered at once
    assert [got.body["attempt"] for got in receiver.received] == [1, 2]
    assert receiver.received[0].body["id"] == receiver.received[1].body["id"]
    assert node.dead.letters == []
    assert await node.drain() == 0


async def test_a_sender_whose_clock_is_far_off_is_rejected_as_a_replay(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]]
) -> None:
    node = await make_node(receiver.url, clock=lambda: now_ms() - 600_000)
    await node.notifier.send(notice())
    await node.drain()
    [got] = receiver.received
    assert not got.valid
    [letter] = node.dead.letters
    assert letter.last_error == "HTTP 401: bad signature"


async def test_delivery_survives_a_failing_recipient_lookup(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]]
) -> None:
    node = await make_node(receiver.url)

    async def broken(user_ids: Sequence[str]) -> list[dict[str, Any]]:
        raise RuntimeError("directory down")

    node.notifier._recipients = broken
    await node.notifier.send(notice())
    await node.drain()
    [got] = receiver.received
    assert got.body["recipients"] == [{"user_id": "u1"}, {"user_id": "u2"}]


async def test_a_notice_without_recipients_is_not_queued(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]]
) -> None:
    node = await make_node(receiver.url)
    await node.notifier.send(notice(recipients=()))
    assert await node.drain() == 0
    assert receiver.received == []


async def test_the_secret_and_the_body_text_are_never_logged(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]]
) -> None:
    receiver.statuses = [500, 400]
    node = await make_node(receiver.url)
    with capture_logs() as entries:
        await node.notifier.send(notice())
        await node.drain()
    assert len(node.dead.letters) == 1
    assert {entry["event"] for entry in entries} >= {
        "webhook delivery failed; will retry",
        "webhook delivery abandoned; dead letter written",
    }
    text = repr(entries)
    assert SECRET not in text
    assert BODY_TEXT not in text
    assert "13800000001" not in text


async def test_two_nodes_on_one_sqlite_file_deliver_each_notice_exactly_once(
    receiver: Receiver, make_node: Callable[..., Awaitable[Node]], storage: SqliteStorage, tmp_path: Path
) -> None:
    other = SqliteStorage(tmp_path / "x.sqlite3")
    await other.open()
    try:
        a = await make_node(receiver.url)
        b = await make_node(receiver.url, store=other)
        for n in range(8):
            await (a if n % 2 else b).notifier.send(notice(n))
        for _ in range(5):
            await asyncio.gather(a.scheduler.run_due(), b.scheduler.run_due())
    finally:
        await other.close()
    ids = [got.body["id"] for got in receiver.received]
    assert len(ids) == len(set(ids)) == 8
    assert all(got.valid and got.body["attempt"] == 1 for got in receiver.received)
    assert a.dead.letters == b.dead.letters == []


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({}, True),
        ({"body": b'{"id":"x","event":"task.urged","title":"tampered"}'}, False),
        ({"secret": "wrong-secret"}, False),
        ({"now": 1_700_000_000 + 301}, False),  # older than 5 minutes: a replay
        ({"now": 1_700_000_000 + 300}, True),  # at the edge of the tolerance
        ({"now": 1_700_000_000 - 301}, False),  # from too far in the future
        ({"timestamp": "1700000001"}, False),  # a timestamp other than the signed one
        ({"timestamp": "17e8"}, False),
        ({"timestamp": ""}, False),
        ({"signature": "deadbeef"}, False),
        ({"signature": ""}, False),
        ({"signature": "sha256=" + "0" * 64}, False),
        ({"signature": "sha256=非十六进制"}, False),
    ],
)
def test_verify_signature(change: dict[str, Any], ok: bool) -> None:
    body = json.dumps({"id": "x", "event": "task.urged", "title": "催办"}, ensure_ascii=False).encode()
    good = {"secret": SECRET, "timestamp": "1700000000", "body": body, "signature": "", "now": 1_700_000_000}
    good["signature"] = sign(SECRET, "1700000000", body)
    args = {**good, **change}
    result = verify_signature(args["secret"], args["timestamp"], args["body"], args["signature"], now=args["now"])
    assert result is ok


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("attempt", "base_ms"),
    [(1, 10_000), (2, 30_000), (3, 120_000), (4, 600_000), (5, 1_800_000), (6, 3_600_000), (40, 3_600_000)],
)
def test_default_backoff_grows_to_an_hour_with_jitter(attempt: int, base_ms: int) -> None:
    for _ in range(50):
        assert 0.8 * base_ms <= default_backoff(attempt) <= 1.2 * base_ms


class Recording:
    def __init__(self) -> None:
        self.got: list[Notice] = []

    async def send(self, notice: Notice) -> None:
        self.got.append(notice)


class Broken:
    async def send(self, notice: Notice) -> None:
        raise RuntimeError("gateway exploded")


async def test_fanout_sends_to_all_and_a_failing_one_does_not_stop_the_others() -> None:
    first, last = Recording(), Recording()
    fanout = FanoutNotifier(first, Broken(), NullNotifier(), last)
    n = notice()
    await fanout.send(n)
    assert first.got == [n]
    assert last.got == [n]
    await FanoutNotifier().send(n)  # no notifiers at all is fine too


async def test_null_notifier_is_harmless() -> None:
    quiet: Notifier = NullNotifier()
    await quiet.send(notice())
    await quiet.send(notice(recipients=()))


async def test_bad_configuration_is_refused_at_construction(storage: SqliteStorage) -> None:
    scheduler = Scheduler(storage)
    for kwargs in ({"url": "ftp://gw/hook"}, {"url": "/hook"}, {"secret": ""}, {"max_attempts": 0}):
        options: dict[str, Any] = {"url": "https://gw.example/hook", "secret": SECRET, **kwargs}
        with pytest.raises(ValueError):
            WebhookNotifier(scheduler=scheduler, dead_letters=DeadLetters(), recipients=lookup, **options)
    WebhookNotifier(
        url="https://gw.example/hook", secret=SECRET, scheduler=scheduler, dead_letters=DeadLetters(), recipients=lookup
    )
    with pytest.raises(ValueError):  # one notifier per scheduler: the job kind is registered once
        WebhookNotifier(
            url="https://gw.example/hook",
            secret=SECRET,
            scheduler=scheduler,
            dead_letters=DeadLetters(),
            recipients=lookup,
        )
    assert WEBHOOK_JOB_KIND == "notify.webhook"
