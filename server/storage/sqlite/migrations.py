"""Schema versions, applied in order at start. Never edit a released version: add a new one."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE departments (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            parent_id TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            department_id TEXT,
            title TEXT NOT NULL DEFAULT '',
            roles TEXT NOT NULL DEFAULT '[]',
            disabled INTEGER NOT NULL DEFAULT 0,
            password_hash TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX users_department ON users (department_id);
        CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            last_seen_at INTEGER NOT NULL,
            revoked_at INTEGER,
            refresh_hash TEXT,
            refresh_prev_hash TEXT,
            refresh_expires_at INTEGER,
            external_session TEXT
        );
        CREATE INDEX devices_user ON devices (user_id, created_at);
        CREATE TABLE audit_log (
            id TEXT PRIMARY KEY,
            chain TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at INTEGER NOT NULL,
            actor_id TEXT,
            device_id TEXT,
            action TEXT NOT NULL,
            subject_type TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            UNIQUE (chain, seq)
        );
        CREATE INDEX audit_actor ON audit_log (actor_id, id);
        CREATE INDEX audit_subject ON audit_log (subject_type, subject_id, id);
        CREATE INDEX audit_action ON audit_log (action, id);
        -- The audit log is append-only: the database itself refuses edits and deletes
        -- made through Muster's connection; `audit verify` catches edits made around it.
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END
        """,
    ),
]
