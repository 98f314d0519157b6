"""PostgreSQL's schema, as the migrations that build it, one version each.

`PostgresEngine` applies the ones a database has not had yet, under an advisory lock, when it
opens. Kept apart from the engine so that what is stored reads in one place.
"""

#: Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE orgs (
        name text COLLATE "C" PRIMARY KEY,
        tz text NOT NULL,
        created bigint NOT NULL,
        change_seq bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('read', 'ingest')),
        org text COLLATE "C" REFERENCES orgs (name),
        hash bytea NOT NULL UNIQUE,
        created bigint NOT NULL,
        last_used bigint,
        revoked bigint
    );
    -- One row per call: its lock, its day, what idle closing and purging need, where its
    -- record is. Not partitioned: it is the directory that says which day holds the call.
    CREATE TABLE calls (
        org text COLLATE "C" NOT NULL,
        call text COLLATE "C" NOT NULL,
        day integer NOT NULL,
        age bigint NOT NULL,
        record_ms bigint,
        open boolean NOT NULL,
        last_seen bigint NOT NULL,
        PRIMARY KEY (org, call)
    );
    CREATE INDEX calls_by_age ON calls (org, age);
    CREATE INDEX calls_by_day ON calls (org, day);
    CREATE INDEX calls_open ON calls (org, last_seen) WHERE open;
    -- Events and records are partitioned by the call's day (the local date of its start, or
    -- of its earliest event while it has none): every row of a call is in one partition, and
    -- retention drops whole days. Append-only events, idempotent per (org, id) within a day.
    CREATE TABLE events (
        org text COLLATE "C" NOT NULL,
        day integer NOT NULL,
        id text COLLATE "C" NOT NULL,
        call text COLLATE "C" NOT NULL,
        instant bigint NOT NULL,
        seq bigint,
        type text NOT NULL,
        party text,
        number text,
        kind text,
        dialed text,
        target text,
        at text NOT NULL,
        PRIMARY KEY (org, day, call, id)
    ) PARTITION BY RANGE (day);
    CREATE UNIQUE INDEX events_by_id ON events (org, day, id);
    CREATE TABLE events_default PARTITION OF events DEFAULT;
    CREATE TABLE records (
        org text COLLATE "C" NOT NULL,
        day integer NOT NULL,
        start_ms bigint NOT NULL,
        call text COLLATE "C" NOT NULL,
        start bigint NOT NULL,
        change_seq bigint NOT NULL,
        json bytea NOT NULL,
        PRIMARY KEY (org, start_ms, call, day)
    ) PARTITION BY RANGE (day);
    CREATE INDEX records_by_change ON records (org, change_seq);
    CREATE TABLE records_default PARTITION OF records DEFAULT;
    """,
    # 2: record identity (changes.md). A call's row holds its latest version and change
    # number, kept when its record goes (a tombstone): the feed is read from `calls`.
    """
    ALTER TABLE orgs ADD COLUMN purged_seq bigint NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN version integer NOT NULL DEFAULT 0,
        ADD COLUMN seq bigint NOT NULL DEFAULT 0,
        ADD COLUMN changed bigint NOT NULL DEFAULT 0;
    ALTER TABLE records ADD COLUMN version integer NOT NULL DEFAULT 1;
    UPDATE calls c SET version = 1, changed = c.last_seen, seq = r.change_seq FROM records r
    WHERE r.org = c.org AND r.day = c.day AND r.start_ms = c.record_ms AND r.call = c.call;
    DROP INDEX records_by_change;
    CREATE INDEX calls_by_seq ON calls (org, seq);
    """,
    # 3: webhook subscriptions (webhooks.md) and the deliveries waiting for a retry.
    """
    CREATE TABLE webhooks (
        id text PRIMARY KEY,
        org text COLLATE "C" NOT NULL REFERENCES orgs (name),
        url text NOT NULL,
        secret text NOT NULL,
        created bigint NOT NULL,
        active integer NOT NULL,
        cursor bigint NOT NULL,
        last_success bigint,
        last_failure bigint,
        failing_since bigint,
        given_up bigint NOT NULL
    );
    CREATE TABLE webhook_retries (
        webhook text NOT NULL,
        seq bigint NOT NULL,
        attempt integer NOT NULL,
        due bigint NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (webhook, seq)
    );
    CREATE INDEX webhook_retries_due ON webhook_retries (webhook, due);
    """,
    # 4: each record's CSV row, rendered with its JSON (NULL for records made before: those
    # are converted when read).
    """
    ALTER TABLE records ADD COLUMN csv bytea;
    """,
    # 5: a call's events are found by (org, day, call) alone, and an event's id is its key. With
    # two indexes that both began (org, day), a fresh day's partition (no statistics yet) had
    # the planner read a call's events through the id index: a scan of the day per call.
    """
    ALTER TABLE events DROP CONSTRAINT events_pkey;
    DROP INDEX events_by_id;
    ALTER TABLE events ADD PRIMARY KEY (org, day, id);
    CREATE INDEX events_by_call ON events (org, day, call);
    """,
    # 6: the `seq` a version had when it became visible, kept when a purge renumbers it
    # (changes.md, version 3 correction): it is not a new version, and no webhook sends it again.
    """
    ALTER TABLE calls ADD COLUMN moved_from bigint;
    """,
    # 7: query.md. Beside each record, its outcome and what the filters read, indexed for the
    # common ones (a group's calls, a number's calls); the outcome and duration of records
    # stored before are filled from their events when the store opens. Each call notes whether
    # it started and ended, and whether it has settled (the completeness watermark).
    """
    ALTER TABLE records ADD COLUMN outcome text, ADD COLUMN caller_no text COLLATE "C",
        ADD COLUMN receiving_no text COLLATE "C", ADD COLUMN callee_no text COLLATE "C",
        ADD COLUMN duration bigint, ADD COLUMN answered_after bigint;
    UPDATE records SET caller_no = convert_from(json, 'UTF8')::jsonb ->> 'callerNo',
        receiving_no = convert_from(json, 'UTF8')::jsonb ->> 'receivingNo',
        callee_no = convert_from(json, 'UTF8')::jsonb ->> 'calleeNo';
    CREATE INDEX records_by_group ON records (org, receiving_no, start_ms, call);
    CREATE INDEX records_by_caller ON records (org, caller_no, start_ms, call);
    CREATE INDEX records_by_callee ON records (org, callee_no, start_ms, call);
    CREATE INDEX records_to_fill ON records (org) WHERE outcome IS NULL;
    ALTER TABLE calls ADD COLUMN started boolean NOT NULL DEFAULT false,
        ADD COLUMN ended boolean NOT NULL DEFAULT false,
        ADD COLUMN settled boolean NOT NULL DEFAULT false;
    UPDATE calls c SET
        started = EXISTS (SELECT 1 FROM events e
            WHERE e.org = c.org AND e.day = c.day AND e.call = c.call AND e.type = 'started'),
        ended = EXISTS (SELECT 1 FROM events e
            WHERE e.org = c.org AND e.day = c.day AND e.call = c.call AND e.type = 'ended');
    CREATE INDEX calls_unsettled ON calls (org, age) WHERE started AND NOT settled;
    CREATE INDEX calls_settling ON calls (org, last_seen) WHERE ended AND NOT settled;
    """,
    # 8: privacy.md. An organisation's own retention (NULL: the installation's) and its secret
    # (the key of its pseudonyms and of the hashes its erasures keep; two random UUIDs, from
    # the server's strong random source); what each token may do (existing ones keep
    # `records,stats`). Erasure's tables come with erasure.
    """
    ALTER TABLE orgs ADD COLUMN retention_days integer, ADD COLUMN secret bytea;
    UPDATE orgs SET secret = decode(replace(gen_random_uuid()::text || gen_random_uuid()::text,
        '-', ''), 'hex');
    ALTER TABLE tokens ADD COLUMN scopes text NOT NULL DEFAULT 'records,stats',
        ADD COLUMN groups text, ADD COLUMN pseudonymize boolean NOT NULL DEFAULT false;
    """,
    # 9: erasure (privacy.md). An erased call keeps its row in `calls`, marked, without events
    # or record: its tombstone says why, and its late events are dropped. The erasures are the
    # organisation's audit trail (a number only as its keyed hash).
    """
    ALTER TABLE calls ADD COLUMN erased boolean NOT NULL DEFAULT false;
    CREATE TABLE erasures (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        org text COLLATE "C" NOT NULL,
        at bigint NOT NULL,
        by text NOT NULL,
        selector text NOT NULL,
        calls bigint NOT NULL
    );
    CREATE INDEX erasures_by_org ON erasures (org, id);
    """,
    # 10: a webhook subscription may send people's numbers as pseudonyms (privacy.md).
    """
    ALTER TABLE webhooks ADD COLUMN pseudonymize boolean NOT NULL DEFAULT false;
    """,
    # 11: an organisation's row changes with every batch of its calls (its change numbers), so
    # its pages keep room for the new versions. Packed full, three updates in four went to
    # another page with a new index entry: after 30 rounds of batches of 1,000 organisations'
    # calls the table held 42,000 dead rows in 628 pages, which locking a batch's organisations
    # read through. With room, each version stays on the page of the one before and the old
    # ones are pruned there (every update heap-only; 77 pages). Three writers at once, in
    # process: such a batch against one organisation's, 1.37-1.43x the time before, 1.21-1.26x
    # after (issue 17). A table made before gets the room as its pages are freed.
    """
    ALTER TABLE orgs SET (fillfactor = 20);
    """,
)
