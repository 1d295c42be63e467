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
    (
        2,
        """
        CREATE TABLE rooms (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            topic TEXT NOT NULL DEFAULT '',
            archived INTEGER NOT NULL DEFAULT 0,
            created_by TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            department_id TEXT,
            case_type TEXT,
            case_id TEXT,
            -- UNIQUE lets any number of rooms have no direct_key (NULLs are distinct).
            direct_key TEXT UNIQUE,
            last_seq INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX rooms_department ON rooms (department_id);
        CREATE INDEX rooms_case ON rooms (case_type, case_id);
        CREATE TABLE memberships (
            room_id TEXT NOT NULL REFERENCES rooms (id),
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            joined_at INTEGER NOT NULL,
            read_seq INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (room_id, user_id)
        ) WITHOUT ROWID;
        CREATE INDEX memberships_user ON memberships (user_id, room_id);
        -- `pk` is an explicit INTEGER PRIMARY KEY so that it survives VACUUM: it is the
        -- rowid of the event's row in message_search.
        CREATE TABLE room_events (
            pk INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL REFERENCES rooms (id),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            sender_id TEXT,
            device_id TEXT,
            client_id TEXT,
            created_at INTEGER NOT NULL,
            body TEXT NOT NULL,
            target_id TEXT,
            edited_at INTEGER,
            recalled_at INTEGER,
            pinned INTEGER NOT NULL DEFAULT 0,
            UNIQUE (room_id, seq)
        );
        -- Sending is idempotent on the sender's client id.
        CREATE UNIQUE INDEX room_events_client ON room_events (room_id, sender_id, client_id)
            WHERE client_id IS NOT NULL;
        CREATE TABLE message_acks (
            room_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            device_id TEXT,
            at INTEGER NOT NULL,
            PRIMARY KEY (room_id, message_id, user_id)
        ) WITHOUT ROWID;
        -- Search tokens (CJK bigrams and lower-cased words, made by the rooms domain) joined
        -- by spaces; rowid = room_events.pk. Diacritics are kept so a token means itself.
        CREATE VIRTUAL TABLE message_search USING fts5 (
            tokens, tokenize = 'unicode61 remove_diacritics 0'
        );
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            due_at INTEGER NOT NULL,
            payload TEXT NOT NULL,
            claimed_by TEXT,
            claimed_until INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX jobs_due ON jobs (due_at)
        """,
    ),
    (
        3,
        """
        -- Resumable uploads. `upload_offset` is the bytes committed so far (OFFSET is an SQL
        -- keyword); `segments` is a JSON list of {start, size, key}; `metadata` a JSON object.
        CREATE TABLE uploads (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            length INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            upload_offset INTEGER NOT NULL DEFAULT 0,
            segments TEXT NOT NULL DEFAULT '[]',
            file_id TEXT
        );
        -- Partial: only unfinished uploads are ever looked up by expiry or summed per user.
        CREATE INDEX uploads_open_expiry ON uploads (expires_at, id) WHERE file_id IS NULL;
        CREATE INDEX uploads_open_user ON uploads (user_id, expires_at) WHERE file_id IS NULL;
        CREATE TABLE files (
            id TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            mime TEXT NOT NULL,
            name TEXT NOT NULL,
            owner_id TEXT NOT NULL,
            device_id TEXT,
            created_at INTEGER NOT NULL,
            status TEXT NOT NULL,
            scan_result TEXT,
            scanned_at INTEGER,
            thumbnail_sha256 TEXT,
            width INTEGER,
            height INTEGER
        );
        CREATE INDEX files_owner ON files (owner_id, size);
        CREATE INDEX files_status ON files (status, created_at, id);
        CREATE TABLE file_links (
            file_id TEXT NOT NULL,
            scope_type TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            target_type TEXT NOT NULL,
            target_id TEXT NOT NULL,
            created_by TEXT,
            created_at INTEGER NOT NULL,
            removed_at INTEGER,
            PRIMARY KEY (file_id, target_type, target_id)
        ) WITHOUT ROWID;
        CREATE INDEX file_links_file ON file_links (file_id, created_at);
        CREATE INDEX file_links_target ON file_links (target_type, target_id);
        CREATE INDEX file_links_scope ON file_links (scope_type, scope_id, created_at)
        """,
    ),
    (
        4,
        """
        -- Workflows: incidents, tasks, projects. Tuples and dicts are JSON text, booleans 0 or 1.
        -- Coordinates and investment have no declared type (BLOB affinity), so a float is kept
        -- as the 8-byte double it is: REAL affinity would store -0.0 as the integer 0.
        CREATE TABLE incidents (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            type TEXT NOT NULL,
            level INTEGER NOT NULL,
            description TEXT NOT NULL,
            address TEXT NOT NULL,
            latitude,
            longitude,
            reporter_id TEXT NOT NULL,
            reporter_device_id TEXT,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            version INTEGER NOT NULL,
            attachments TEXT NOT NULL DEFAULT '[]',
            room_id TEXT,
            verified_by TEXT,
            verified_at INTEGER,
            resolved_at INTEGER,
            closed_at INTEGER
        );
        CREATE INDEX incidents_state ON incidents (state, id);
        CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            case_type TEXT NOT NULL,
            case_id TEXT NOT NULL,
            title TEXT NOT NULL,
            instructions TEXT NOT NULL,
            priority TEXT NOT NULL,
            deadline INTEGER NOT NULL,
            assigned_by TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            version INTEGER NOT NULL,
            department_id TEXT,
            assignee_id TEXT,
            accepted_by TEXT,
            accepted_at INTEGER,
            urge_count INTEGER NOT NULL DEFAULT 0,
            last_urged_at INTEGER,
            chain_active INTEGER NOT NULL DEFAULT 1,
            supervised INTEGER NOT NULL DEFAULT 0,
            supervised_at INTEGER,
            supervise_deadline INTEGER,
            result_text TEXT NOT NULL DEFAULT '',
            result_attachments TEXT NOT NULL DEFAULT '[]',
            submitted_at INTEGER,
            submitted_by TEXT,
            review_comment TEXT NOT NULL DEFAULT '',
            reviewed_by TEXT,
            reviewed_at INTEGER,
            sent_back_count INTEGER NOT NULL DEFAULT 0,
            completed_at INTEGER,
            problem_id TEXT
        );
        CREATE INDEX tasks_case ON tasks (case_type, case_id, id);
        CREATE INDEX tasks_assignee ON tasks (assignee_id, id);
        CREATE INDEX tasks_department ON tasks (department_id, id);
        CREATE INDEX tasks_state ON tasks (state, id);
        CREATE INDEX tasks_supervised ON tasks (supervised, id);
        CREATE TABLE task_acks (
            task_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            device_id TEXT,
            at INTEGER NOT NULL,
            PRIMARY KEY (task_id, user_id)
        ) WITHOUT ROWID;
        CREATE TABLE projects (
            id TEXT PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            owner_department_id TEXT NOT NULL,
            responsible_department_ids TEXT NOT NULL DEFAULT '[]',
            investment NOT NULL,
            address TEXT NOT NULL,
            latitude,
            longitude,
            phase TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            version INTEGER NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            planned TEXT NOT NULL DEFAULT '{}',
            actual TEXT NOT NULL DEFAULT '{}',
            progress INTEGER NOT NULL DEFAULT 0,
            room_id TEXT
        );
        CREATE INDEX projects_phase ON projects (phase, id);
        CREATE TABLE progress_reports (
            id TEXT PRIMARY KEY,
            project_id TEXT NOT NULL,
            percent INTEGER NOT NULL,
            text TEXT NOT NULL,
            reporter_id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            attachments TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX progress_reports_project ON progress_reports (project_id, created_at, id);
        CREATE TABLE problems (
            id TEXT PRIMARY KEY,
            project_id TEXT NOT NULL,
            title TEXT NOT NULL,
            description TEXT NOT NULL,
            reporter_id TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            version INTEGER NOT NULL,
            task_id TEXT,
            resolved_at INTEGER
        );
        CREATE INDEX problems_project ON problems (project_id, id);
        CREATE TABLE dead_letters (
            id TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            event TEXT NOT NULL,
            payload TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX dead_letters_created ON dead_letters (created_at, id)
        """,
    ),
    (
        5,
        """
        -- Offline clients: incidents and progress reports carry the reporting client's id, one per
        -- reporter and client id (a resend after a lost answer finds the first). Rows without a
        -- client id are left out of the unique indexes.
        ALTER TABLE incidents ADD COLUMN client_id TEXT;
        CREATE UNIQUE INDEX incidents_client_unique ON incidents (reporter_id, client_id)
            WHERE client_id IS NOT NULL;
        ALTER TABLE progress_reports ADD COLUMN client_id TEXT;
        CREATE UNIQUE INDEX progress_reports_client_unique ON progress_reports (reporter_id, client_id)
            WHERE client_id IS NOT NULL;
        -- Task progress reports (反馈进展): the task's state does not change.
        CREATE TABLE task_progress (
            id TEXT PRIMARY KEY,
            task_id TEXT NOT NULL,
            reporter_id TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            percent INTEGER,
            attachments TEXT NOT NULL DEFAULT '[]',
            client_id TEXT
        );
        CREATE INDEX task_progress_task ON task_progress (task_id, created_at, id);
        CREATE UNIQUE INDEX task_progress_client_unique ON task_progress (reporter_id, client_id)
            WHERE client_id IS NOT NULL
        """,
    ),
    (
        6,
        """
        -- A new message's search tokens wait here (a plain table: one row appended in the
        -- message's transaction) until they are moved into message_search in batches: one FTS5
        -- write per batch instead of one per message. A search moves them first.
        CREATE TABLE search_pending (
            pk INTEGER PRIMARY KEY,
            tokens TEXT NOT NULL
        )
        """,
    ),
]
