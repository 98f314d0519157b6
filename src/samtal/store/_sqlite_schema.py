"""SQLite's schema, as the migrations that build it, one version each.

`SqliteEngine` applies the ones a database has not had yet when it opens. Kept apart from the
engine so that what is stored reads in one place.
"""

#: Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE orgs (
        name TEXT PRIMARY KEY,
        tz TEXT NOT NULL,
        created INTEGER NOT NULL,
        change_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('read', 'ingest')),
        org TEXT REFERENCES orgs (name),
        hash BLOB NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        last_used INTEGER,
        revoked INTEGER
    );
    -- Append-only, idempotent per (org, id); clustered by call, so that a call's events,
    -- which recomputing its record reads, lie together.
    CREATE TABLE events (
        org TEXT NOT NULL,
        id TEXT NOT NULL,
        call TEXT NOT NULL,
        instant INTEGER NOT NULL,
        seq INTEGER,
        type TEXT NOT NULL,
        party TEXT,
        number TEXT,
        kind TEXT,
        dialed TEXT,
        target TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (org, call, id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX events_by_id ON events (org, id);
    -- One row per call: what idle closing and purging need, and where its record is.
    CREATE TABLE calls (
        org TEXT NOT NULL,
        call TEXT NOT NULL,
        age INTEGER NOT NULL,        -- start of the call, or its earliest event without one
        record_ms INTEGER,           -- start_ms of its record, NULL while it has none
        open INTEGER NOT NULL,       -- 1 while it has not stopped
        last_seen INTEGER NOT NULL,  -- server clock of its latest event
        PRIMARY KEY (org, call)
    ) WITHOUT ROWID;
    CREATE INDEX calls_by_age ON calls (org, age);
    CREATE INDEX calls_open ON calls (last_seen) WHERE open = 1;
    CREATE TABLE records (
        org TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        call TEXT NOT NULL,
        start INTEGER NOT NULL,
        change_seq INTEGER NOT NULL,
        json BLOB NOT NULL,
        PRIMARY KEY (org, start_ms, call)
    ) WITHOUT ROWID;
    CREATE INDEX records_by_change ON records (org, change_seq);
    """,
    # 2: record identity (changes.md). A call's row holds its latest version and change
    # number, kept when its record goes (a tombstone): the feed is read from `calls`.
    """
    ALTER TABLE orgs ADD COLUMN purged_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    UPDATE calls SET version = 1, changed = last_seen, seq = (
        SELECT r.change_seq FROM records r
        WHERE r.org = calls.org AND r.start_ms = calls.record_ms AND r.call = calls.call
    ) WHERE record_ms IS NOT NULL;
    DROP INDEX records_by_change;
    CREATE INDEX calls_by_seq ON calls (org, seq);
    """,
    # 3: webhook subscriptions (webhooks.md) and the deliveries waiting for a retry.
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        org TEXT NOT NULL REFERENCES orgs (name),
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        created INTEGER NOT NULL,
        active INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        last_success INTEGER,
        last_failure INTEGER,
        failing_since INTEGER,
        given_up INTEGER NOT NULL
    );
    CREATE TABLE webhook_retries (
        webhook TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        due INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (webhook, seq)
    ) WITHOUT ROWID;
    CREATE INDEX webhook_retries_due ON webhook_retries (webhook, due);
    """,
    # 4: each record's CSV row, rendered with its JSON (NULL for records made before: those
    # are converted when read).
    """
    ALTER TABLE records ADD COLUMN csv BLOB;
    """,
    # 5: the `seq` a version had when it became visible, kept when a purge renumbers it
    # (changes.md, version 3 correction): it is not a new version, and no webhook sends it again.
    """
    ALTER TABLE calls ADD COLUMN moved_from INTEGER;
    """,
    # 6: query.md. Beside each record, its outcome and what the filters read, indexed for the
    # common ones (a group's calls, a number's calls); the outcome and duration of records
    # stored before are filled from their events when the store opens. Each call notes whether
    # it started and ended, and whether it has settled (the completeness watermark).
    """
    ALTER TABLE records ADD COLUMN outcome TEXT;
    ALTER TABLE records ADD COLUMN caller_no TEXT;
    ALTER TABLE records ADD COLUMN receiving_no TEXT;
    ALTER TABLE records ADD COLUMN callee_no TEXT;
    ALTER TABLE records ADD COLUMN duration INTEGER;
    ALTER TABLE records ADD COLUMN answered_after INTEGER;
    UPDATE records SET caller_no = CAST(json AS TEXT) ->> '$.callerNo',
        receiving_no = CAST(json AS TEXT) ->> '$.receivingNo',
        callee_no = CAST(json AS TEXT) ->> '$.calleeNo';
    CREATE INDEX records_by_group ON records (org, receiving_no, start_ms, call);
    CREATE INDEX records_by_caller ON records (org, caller_no, start_ms, call);
    CREATE INDEX records_by_callee ON records (org, callee_no, start_ms, call);
    CREATE INDEX records_to_fill ON records (org) WHERE outcome IS NULL;
    ALTER TABLE calls ADD COLUMN started INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN ended INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
    UPDATE calls SET
        started = EXISTS (SELECT 1 FROM events e
            WHERE e.org = calls.org AND e.call = calls.call AND e.type = 'started'),
        ended = EXISTS (SELECT 1 FROM events e
            WHERE e.org = calls.org AND e.call = calls.call AND e.type = 'ended');
    CREATE INDEX calls_unsettled ON calls (org, age) WHERE started = 1 AND settled = 0;
    CREATE INDEX calls_settling ON calls (last_seen) WHERE settled = 0 AND ended = 1;
    """,
    # 7: privacy.md. An organisation's own retention (NULL: the installation's) and its secret
    # (the key of its pseudonyms and of the hashes its erasures keep); what each token may do
    # (existing ones keep `records,stats`). Erasure's tables come with erasure.
    """
    ALTER TABLE orgs ADD COLUMN retention_days INTEGER;
    ALTER TABLE orgs ADD COLUMN secret BLOB;
    UPDATE orgs SET secret = randomblob(32);
    ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'records,stats';
    ALTER TABLE tokens ADD COLUMN groups TEXT;
    ALTER TABLE tokens ADD COLUMN pseudonymize INTEGER NOT NULL DEFAULT 0;
    """,
    # 8: erasure (privacy.md). An erased call keeps its row in `calls`, marked, without events
    # or record: its tombstone says why, and its late events are dropped. The erasures are the
    # organisation's audit trail (a number only as its keyed hash).
    """
    ALTER TABLE calls ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE erasures (
        id INTEGER PRIMARY KEY,
        org TEXT NOT NULL,
        at INTEGER NOT NULL,
        by TEXT NOT NULL,
        selector TEXT NOT NULL,
        calls INTEGER NOT NULL
    );
    CREATE INDEX erasures_by_org ON erasures (org, id);
    """,
    # 9: a webhook subscription may send people's numbers as pseudonyms (privacy.md).
    """
    ALTER TABLE webhooks ADD COLUMN pseudonymize INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: /cdr/stats (stats.md). A period's records by UTC hour and response group, with what
    # the figures sum: SQLite groups by sorting, and sorting two months of records cost more
    # than streaming them; in this order the sums of whole hours are made as they are read.
    """
    CREATE INDEX records_hourly ON records (
        org, start_ms / 3600000, receiving_no, start, duration, answered_after
    );
    """,
    # 11: a caller's and a callee's records by UTC day first. Keyed by number first, each
    # record went to a page anywhere in the index, so every commit rewrote nearly all of its
    # leaves (and the checkpoint again): the import's bytes written grew with the history kept.
    # By day first, a batch's records land in its days' few pages; a query seeks each day.
    """
    DROP INDEX records_by_caller;
    DROP INDEX records_by_callee;
    CREATE INDEX records_caller_by_day ON records (org, start_ms / 86400000, caller_no, start_ms,
        call);
    CREATE INDEX records_callee_by_day ON records (org, start_ms / 86400000, callee_no, start_ms,
        call);
    """,
    # 12: which organisations' change numbers moved since the watcher last looked. Each commit
    # that moves them marks the organisations with a number above every mark before, so the
    # watcher reads those alone; it read every organisation's numbers after each commit, 13 ms
    # for 10,000 of them, up to ten times a second in each process.
    """
    ALTER TABLE orgs ADD COLUMN moved INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX orgs_by_moved ON orgs (moved);
    """,
)
