"""Command line: `python -m server run | create-admin | users ... | departments ... | audit verify`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from server.app import create_app, make_storage
from server.audit.service import AuditLog
from server.auth.passwords import Passwords
from server.auth.service import AuthService
from server.auth.tokens import TokenService
from server.counters import MemoryCounters
from server.demo import seed_demo
from server.errors import AppError
from server.gcpolicy import GcPolicy
from server.logging import configure_logging, get_logger
from server.org.service import OrgService
from server.settings import Settings, SettingsError, load_settings
from server.storage.ports import Storage

log = get_logger("muster.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description="Muster command and dispatch server")
    parser.add_argument("--config", help="TOML file overriding config/default.toml and MUSTER_* variables")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the server")
    run.add_argument("--host", help="listen address (overrides server.host)")
    run.add_argument("--port", type=int, help="listen port (overrides server.port)")
    run.add_argument("--demo", action="store_true", help="fill an empty database with the demo county")

    admin = sub.add_parser("create-admin", help="create an administrator (for the first sign-in)")
    admin.add_argument("username")
    admin.add_argument("--name", default="管理员", help="display name")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    users = sub.add_parser("users", help="manage users without the web")
    usub = users.add_subparsers(dest="action", required=True)
    usub.add_parser("list", help="list users")
    add = usub.add_parser("add", help="add a user")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--role", action="append", dest="roles", required=True,
                     choices=["admin", "commander", "dept_lead", "responder", "inspector"])
    add.add_argument("--department", help="department id")
    add.add_argument("--title", default="")
    add.add_argument("--password-stdin", action="store_true")
    for name, text in (("disable", "disable a user and sign out all their devices"), ("enable", "enable a user")):
        p = usub.add_parser(name, help=text)
        p.add_argument("username")
    pw = usub.add_parser("set-password", help="set a user's password")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    roles = usub.add_parser("set-roles", help="replace a user's roles")
    roles.add_argument("username")
    roles.add_argument("--role", action="append", dest="roles", required=True,
                       choices=["admin", "commander", "dept_lead", "responder", "inspector"])

    deps = sub.add_parser("departments", help="manage departments without the web")
    dsub = deps.add_subparsers(dest="action", required=True)
    dsub.add_parser("list", help="list departments as a tree")
    dadd = dsub.add_parser("add", help="add a department")
    dadd.add_argument("name")
    dadd.add_argument("--kind", choices=["county", "department", "team"], required=True)
    dadd.add_argument("--parent", help="parent department id")

    audit = sub.add_parser("audit", help="the audit log")
    asub = audit.add_subparsers(dest="action", required=True)
    verify = asub.add_parser("verify", help="check every hash chain; report the first broken link")
    verify.add_argument("--chain", help="check one chain only")
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("passwords differ")
    return first


async def _with_services(settings: Settings, work: Callable[[Storage, OrgService, AuditLog], Awaitable[int]]) -> int:
    storage = make_storage(settings)
    await storage.open()
    try:
        audit = AuditLog(storage)
        auth = AuthService(storage=storage, audit=audit, tokens=TokenService(settings.auth, settings.sso),
                           passwords=Passwords(), counters=MemoryCounters(), settings=settings.auth)
        return await work(storage, OrgService(storage=storage, audit=audit, auth=auth), audit)
    finally:
        await storage.close()


async def _user_id(storage: Storage, username: str) -> str:
    user = await storage.get_user_by_username(username)
    if user is None:
        raise AppError(f"no user {username!r}", code="user.not_found", status=404)
    return user.id


def _admin_commands(args: argparse.Namespace) -> Callable[[Storage, OrgService, AuditLog], Awaitable[int]]:
    async def work(storage: Storage, org: OrgService, audit: AuditLog) -> int:
        if args.command == "create-admin":
            user = await org.create_user(None, username=args.username, display_name=args.name,
                                         password=_read_password(args.password_stdin), roles=["admin"])
            print(f"created admin {user.username} ({user.id})")
        elif args.command == "users":
            await _users(args, storage, org)
        elif args.command == "departments":
            if args.action == "list":
                departments = await org.list_departments()
                children: dict[str | None, list[Any]] = {}
                for d in departments:
                    children.setdefault(d.parent_id, []).append(d)
                known = {d.id for d in departments}

                def show(parent: str | None, depth: int) -> None:
                    for d in children.get(parent, []):
                        print(f"{'  ' * depth}{d.name}  [{d.kind}]  {d.id}")
                        show(d.id, depth + 1)

                show(None, 0)
                for parent, orphans in children.items():
                    if parent is not None and parent not in known:
                        for d in orphans:
                            print(f"{d.name}  [{d.kind}]  {d.id}  (parent {parent} missing)")
            else:
                d = await org.create_department(None, name=args.name, kind=args.kind, parent_id=args.parent)
                print(f"created {d.kind} {d.name} ({d.id})")
        elif args.command == "audit":
            report = await audit.verify(args.chain)
            if report.ok:
                print(f"audit log intact: {report.records} records in {report.chains} chains")
                return 0
            broken = report.broken
            assert broken is not None
            print(f"audit log BROKEN in chain {broken.chain!r} at record {broken.seq} (id {broken.record_id}): "
                  f"{broken.reason}")
            return 1
        return 0

    return work


async def _users(args: argparse.Namespace, storage: Storage, org: OrgService) -> None:
    if args.action == "list":
        after = None
        while True:
            users = await org.list_users(after=after, limit=200)
            for u in users:
                state = "disabled" if u.disabled else "active"
                print(f"{u.username:20} {u.display_name:12} {','.join(u.roles):24} {state:8} {u.id}")
            if len(users) < 200:
                break
            after = users[-1].id
    elif args.action == "add":
        user = await org.create_user(None, username=args.username, display_name=args.name,
                                     password=_read_password(args.password_stdin), department_id=args.department,
                                     title=args.title, roles=args.roles)
        print(f"created {user.username} ({user.id})")
    elif args.action in ("disable", "enable"):
        await org.update_user(None, await _user_id(storage, args.username), disabled=args.action == "disable")
        print(f"{args.username} {args.action}d")
    elif args.action == "set-password":
        await org.update_user(None, await _user_id(storage, args.username),
                              password=_read_password(args.password_stdin))
        print(f"password of {args.username} changed")
    elif args.action == "set-roles":
        await org.update_user(None, await _user_id(storage, args.username), roles=args.roles)
        print(f"roles of {args.username}: {', '.join(args.roles)}")


async def _gc_policy(app: web.Application) -> AsyncIterator[None]:
    policy = GcPolicy()
    policy.start()
    yield
    await policy.stop()


def _run(settings: Settings, *, demo: bool) -> int:
    if demo and settings.production:
        raise SettingsError("demo data is refused in production mode")
    app = create_app(settings)

    if demo:
        from server.kernel import KERNEL

        async def seed(app: web.Application) -> None:
            k = app[KERNEL]
            logins = await seed_demo(k.storage, k.org, password=settings.demo.password)
            if logins:
                from workflows.demo import seed_workflow_demo
                from workflows.views import INCIDENTS, PROJECT_SERVICE, TASK_SERVICE

                await seed_workflow_demo(k.storage, app[INCIDENTS], app[TASK_SERVICE], app[PROJECT_SERVICE])
                print("\nDemo county created. Sign in with any of these (password: "
                      f"{settings.demo.password}):", flush=True)
                for login in logins:
                    print(f"  {login.username:10} {login.display_name:6} {login.role:10} {login.department}",
                          flush=True)
                print(flush=True)

        app.on_startup.append(seed)
    if settings.server.gc_freeze:
        app.cleanup_ctx.append(_gc_policy)
    print(f"Muster listening on http://{settings.server.host}:{settings.server.port}", flush=True)
    web.run_app(app, host=settings.server.host, port=settings.server.port, print=None,
                shutdown_timeout=settings.server.shutdown_timeout, access_log=None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        overrides: dict[str, dict[str, Any]] = {}
        if args.command == "run":
            server = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
            if server:
                overrides["server"] = server
        settings = load_settings(args.config, overrides=overrides)
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log.level, fmt=settings.log_format)
    try:
        if args.command == "run":
            return _run(settings, demo=args.demo)
        return asyncio.run(_with_services(settings, _admin_commands(args)))
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"error: {exc.message} ({exc.code})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
