-- fdmd-backoffice schema 1: establishments, their verified chains, evidence, turnover.

-- An establishment (one fdmd box) as enrolled by the back office's administrator.
CREATE TABLE establishments (
    id                TEXT PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    name              TEXT NOT NULL,
    vat_number        TEXT NOT NULL,
    -- SHA-256 of the bearer credential the box sends; the credential itself is never stored.
    credential_sha256 BYTEA NOT NULL CHECK (length(credential_sha256) = 32),
    enrolled_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The production number of the box's FDM, from its first record.
    fdm_id            TEXT,
    -- The head of the stored chain (0 / NULL before the first segment).
    last_seq          BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_hash         BYTEA,
    last_fdm_time     TEXT,
    last_received_at  TIMESTAMPTZ,
    -- Set when a segment was refused (tamper, fork, bad signature…); cleared only by an admin.
    flagged           BOOLEAN NOT NULL DEFAULT false,
    flag_code         TEXT,
    flag_problem      TEXT,
    flagged_at        TIMESTAMPTZ
);

-- Signer public keys given at enrolment (out of band: the card, `GET /v1/signer`, a Z report).
-- Every record must be signed by one of them.
CREATE TABLE enrolled_keys (
    establishment_id TEXT NOT NULL REFERENCES establishments (id),
    public_key       BYTEA NOT NULL CHECK (length(public_key) = 32),
    added_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (establishment_id, public_key)
);

-- Verified records, exactly as the box signed them.
CREATE TABLE records (
    establishment_id TEXT NOT NULL REFERENCES establishments (id),
    seq              BIGINT NOT NULL CHECK (seq >= 1),
    kind             TEXT NOT NULL,
    fdm_time         TEXT NOT NULL,
    fdm_date         DATE NOT NULL,
    signer_id        TEXT NOT NULL,
    prev_hash        BYTEA NOT NULL,
    hash             BYTEA NOT NULL,
    signature        BYTEA NOT NULL,
    -- The canonical bytes (docs/journal-format.md §2-3): the only authoritative content.
    canonical        BYTEA NOT NULL,
    -- fiscal events: NS, NR, PS…; reports: X or Z.
    label            TEXT,
    report           TEXT,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (establishment_id, seq)
);
CREATE INDEX records_by_date ON records (establishment_id, fdm_date);
CREATE INDEX records_z_reports ON records (establishment_id, seq) WHERE report = 'Z';

-- Records are never changed nor removed.
CREATE FUNCTION records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'records are append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER records_no_update BEFORE UPDATE OR DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION records_append_only();

-- Signers declared by stored records (journal_open, signer_change).
CREATE TABLE chain_signers (
    establishment_id TEXT NOT NULL REFERENCES establishments (id),
    signer_id        TEXT NOT NULL,
    algorithm        TEXT NOT NULL,
    public_key       TEXT NOT NULL,
    declared_seq     BIGINT NOT NULL,
    PRIMARY KEY (establishment_id, signer_id)
);

-- The last value of every counter of the stored chain: `total`, `label:NS`…, `series:<name>`.
CREATE TABLE chain_counters (
    establishment_id TEXT NOT NULL REFERENCES establishments (id),
    counter          TEXT NOT NULL,
    value            BIGINT NOT NULL,
    PRIMARY KEY (establishment_id, counter)
);

-- Turnover (NS and NR events) per FDM date and VAT letter, maintained on ingest. Rate `-` holds
-- the totals of pre-computed events, which carry no VAT split.
CREATE TABLE turnover_daily (
    establishment_id TEXT NOT NULL REFERENCES establishments (id),
    fdm_date         DATE NOT NULL,
    rate             TEXT NOT NULL,
    tickets          BIGINT NOT NULL,
    total_cents      BIGINT NOT NULL,
    vat_cents        BIGINT NOT NULL,
    PRIMARY KEY (establishment_id, fdm_date, rate)
);
CREATE INDEX turnover_by_date ON turnover_daily (fdm_date, rate);

-- Segments refused on arrival, kept as evidence.
CREATE TABLE refused_segments (
    id               BIGSERIAL PRIMARY KEY,
    establishment_id TEXT NOT NULL REFERENCES establishments (id),
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    code             TEXT NOT NULL,
    problem          TEXT NOT NULL,
    seq              BIGINT,
    body             BYTEA NOT NULL
);
CREATE INDEX refused_by_establishment ON refused_segments (establishment_id, received_at);
