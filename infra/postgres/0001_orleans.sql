-- =====================================================================================
-- 0001_orleans.sql
--
-- Schema and stored queries read by the Orleans 10.4.2 ADO.NET providers
-- (Microsoft.Orleans.Clustering.AdoNet, .Persistence.AdoNet, .Reminders.AdoNet)
-- on PostgreSQL 15 through Npgsql.
--
-- Written from the contract that the 10.4.2 binaries expect (see ORLEANS-NOTES.md §0, §1),
-- NOT copied from the upstream scripts, some of which bind parameters 10.4.2 never sends.
--
-- Contract reminders:
--   * Orleans loads its SQL from orleansquery(querykey, querytext) at start-up and caches it:
--     after changing a query text the silos (and clients) must be restarted.
--   * Parameters are bound by name as @Name by Npgsql. Orleans always sets DbType, so NULLs
--     are typed and "@X IS NULL" is legal.
--   * Result columns are looked up by name (case-insensitive in Npgsql), so the lower-case
--     unquoted identifiers below satisfy names such as "PayloadBinary" or "NewGrainStateVersion".
--   * "Did the conditional write succeed" results are read with Convert.ToBoolean(record[0])
--     from a record that must have EXACTLY ONE column: those queries end with a one-row,
--     one-column SELECT computed from a data-modifying CTE.
--
-- Idempotent: every object is created with IF NOT EXISTS and every query text is upserted,
-- so applying the file twice leaves the same state. No psql meta-commands and no
-- CREATE INDEX CONCURRENTLY: the file is executed as one command inside one transaction.
--
-- All times are timestamptz: Orleans binds DateTime with DbType.DateTime, which Npgsql sends
-- as "timestamp with time zone" (Kind=Utc only). Storing it in a "timestamp" (without time
-- zone) column would convert it through the session TimeZone and Orleans would read back a
-- shifted value.
-- =====================================================================================


-- -------------------------------------------------------------------------------------
-- Query catalogue shared by the three providers.
-- -------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS orleansquery
(
    querykey  varchar(64) NOT NULL PRIMARY KEY,
    querytext text        NOT NULL
);


-- =====================================================================================
-- Clustering / membership
-- =====================================================================================

-- One row per deployment (ClusterOptions.ClusterId). version is the table-wide ETag:
-- every InsertMembership/UpdateMembership compares it with @Version and bumps it atomically.
CREATE TABLE IF NOT EXISTS orleansmembershipversiontable
(
    deploymentid text        NOT NULL PRIMARY KEY,
    modifiedon   timestamptz NOT NULL DEFAULT now(),
    version      integer     NOT NULL DEFAULT 0
);

-- One row per silo instance (address, port, generation).
-- address is text, NOT inet: Orleans binds it as an AnsiString and reads it back as a string
-- that it parses with IPAddress.Parse; an inet column would not round-trip as a string.
CREATE TABLE IF NOT EXISTS orleansmembershiptable
(
    deploymentid text        NOT NULL,
    address      text        NOT NULL,
    port         integer     NOT NULL,
    generation   integer     NOT NULL,
    siloname     text        NOT NULL,
    hostname     text        NOT NULL,
    status       integer     NOT NULL,   -- SiloStatus: 0 None .. 3 Active .. 6 Dead
    proxyport    integer     NOT NULL,   -- 0 when the silo has no gateway
    suspecttimes text        NULL,       -- "addr,date|addr,date" or NULL
    starttime    timestamptz NOT NULL,
    iamalivetime timestamptz NOT NULL,
    CONSTRAINT pk_orleansmembershiptable
        PRIMARY KEY (deploymentid, address, port, generation),
    CONSTRAINT fk_orleansmembershiptable_version
        FOREIGN KEY (deploymentid) REFERENCES orleansmembershipversiontable (deploymentid)
        ON DELETE CASCADE
);


-- =====================================================================================
-- Grain persistence
-- =====================================================================================

-- One row per (serviceid, graintypestring, grainidn0, grainidn1, grainidextensionstring).
-- The hash columns only serve the index lookup: two different keys can share a hash, so every
-- query also compares all the key columns. grainidextensionstring is NULL for keys without an
-- extension, hence IS NOT DISTINCT FROM in the queries and NULLS NOT DISTINCT (PostgreSQL 15+)
-- on the unique index (NULL must not be conflated with '' either, so no COALESCE trick).
-- version is the ETag; payloadbinary is NULL for a cleared row (Orleans: RecordExists=false).
CREATE TABLE IF NOT EXISTS orleansstorage
(
    grainidhash            integer     NOT NULL,
    grainidn0              bigint      NOT NULL,
    grainidn1              bigint      NOT NULL,
    graintypehash          integer     NOT NULL,
    graintypestring        text        NOT NULL,
    grainidextensionstring text        NULL,
    serviceid              text        NOT NULL,
    payloadbinary          bytea       NULL,
    modifiedon             timestamptz NOT NULL DEFAULT now(),
    version                integer     NOT NULL
);

-- Lookup index: narrows every query to the few rows sharing both hashes.
CREATE INDEX IF NOT EXISTS ix_orleansstorage_hashes
    ON orleansstorage (grainidhash, graintypehash);

-- Makes first inserts race-safe: of two writers that both hold a NULL ETag, the loser's
-- INSERT ... ON CONFLICT DO NOTHING returns no row and Orleans raises
-- InconsistentStateException, which is the correct outcome for a genuine race.
CREATE UNIQUE INDEX IF NOT EXISTS ux_orleansstorage_key
    ON orleansstorage (serviceid, graintypestring, grainidn0, grainidn1, grainidextensionstring)
    NULLS NOT DISTINCT;


-- =====================================================================================
-- Reminders
-- =====================================================================================

-- grainhash is a signed integer: Orleans passes the uint ring hash reinterpreted as (int) and
-- picks ReadRangeRows1/2 by comparing (int)begin < (int)end, so the column and the range
-- comparisons must be signed for the two queries to partition the ring correctly.
-- period is bigint: Orleans binds it as int, or as bigint when it exceeds int.MaxValue ms.
CREATE TABLE IF NOT EXISTS orleansremindertable
(
    serviceid    text        NOT NULL,
    grainid      text        NOT NULL,
    remindername text        NOT NULL,
    starttime    timestamptz NOT NULL,
    period       bigint      NOT NULL,
    grainhash    integer     NOT NULL,
    version      integer     NOT NULL,
    CONSTRAINT pk_orleansremindertable PRIMARY KEY (serviceid, grainid, remindername)
);

CREATE INDEX IF NOT EXISTS ix_orleansremindertable_grainhash
    ON orleansremindertable (serviceid, grainhash);


-- =====================================================================================
-- Stored queries
-- =====================================================================================
INSERT INTO orleansquery (querykey, querytext) VALUES

-- ---------------------------------------------------------------- clustering -------------

-- 1 column: true if the version row was created (false if it already existed).
('InsertMembershipVersionKey', $q$
WITH ins AS (
    INSERT INTO orleansmembershipversiontable (deploymentid)
    VALUES (@DeploymentId)
    ON CONFLICT (deploymentid) DO NOTHING
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins) AS inserted;
$q$),

-- Atomic compare-and-increment: the version row is bumped only if it still equals @Version
-- and the silo row does not exist yet; the silo row is inserted only if the bump happened.
-- The row lock on the version row serialises concurrent writers (a loser re-checks
-- version = @Version after the winner commits and finds nothing to update).
-- 1 column: true on success.
('InsertMembershipKey', $q$
WITH v AS (
    UPDATE orleansmembershipversiontable
    SET version = version + 1,
        modifiedon = now()
    WHERE deploymentid = @DeploymentId
      AND version = @Version
      AND NOT EXISTS (
          SELECT 1 FROM orleansmembershiptable
          WHERE deploymentid = @DeploymentId
            AND address = @Address
            AND port = @Port
            AND generation = @Generation)
    RETURNING deploymentid
), ins AS (
    INSERT INTO orleansmembershiptable
        (deploymentid, address, port, generation, siloname, hostname, status, proxyport,
         suspecttimes, starttime, iamalivetime)
    SELECT v.deploymentid, @Address, @Port, @Generation, @SiloName, @HostName, @Status, @ProxyPort,
           NULL, @StartTime, @IAmAliveTime
    FROM v
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins) AS inserted;
$q$),

-- Atomic compare-and-increment: the silo row is locked first (m), the version row is bumped
-- only if it still equals @Version and the silo row exists, and the silo row is updated only
-- if the bump happened. 1 column: true on success.
('UpdateMembershipKey', $q$
WITH m AS (
    SELECT deploymentid, address, port, generation
    FROM orleansmembershiptable
    WHERE deploymentid = @DeploymentId
      AND address = @Address
      AND port = @Port
      AND generation = @Generation
    FOR UPDATE
), v AS (
    UPDATE orleansmembershipversiontable
    SET version = version + 1,
        modifiedon = now()
    WHERE deploymentid = @DeploymentId
      AND version = @Version
      AND EXISTS (SELECT 1 FROM m)
    RETURNING deploymentid
), upd AS (
    UPDATE orleansmembershiptable t
    SET status = @Status,
        suspecttimes = @SuspectTimes,
        iamalivetime = @IAmAliveTime
    FROM m, v
    WHERE t.deploymentid = m.deploymentid
      AND t.address = m.address
      AND t.port = m.port
      AND t.generation = m.generation
      AND v.deploymentid = m.deploymentid
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM upd) AS updated;
$q$),

-- Heartbeat; does not touch the table version. Result ignored by Orleans.
('UpdateIAmAlivetimeKey', $q$
UPDATE orleansmembershiptable
SET iamalivetime = @IAmAliveTime
WHERE deploymentid = @DeploymentId
  AND address = @Address
  AND port = @Port
  AND generation = @Generation;
$q$),

-- The version row LEFT JOIN the member row: Orleans takes the table version from row 0, so at
-- least one row must come back even when the silo row does not exist (then StartTime is NULL).
('MembershipReadRowKey', $q$
SELECT m.address, m.port, m.generation, m.siloname, m.hostname, m.status, m.proxyport,
       m.suspecttimes, m.starttime, m.iamalivetime, v.version
FROM orleansmembershipversiontable v
LEFT JOIN orleansmembershiptable m
       ON m.deploymentid = v.deploymentid
      AND m.address = @Address
      AND m.port = @Port
      AND m.generation = @Generation
WHERE v.deploymentid = @DeploymentId;
$q$),

-- Same shape as MembershipReadRowKey, all members of the deployment.
('MembershipReadAllKey', $q$
SELECT m.address, m.port, m.generation, m.siloname, m.hostname, m.status, m.proxyport,
       m.suspecttimes, m.starttime, m.iamalivetime, v.version
FROM orleansmembershipversiontable v
LEFT JOIN orleansmembershiptable m
       ON m.deploymentid = v.deploymentid
WHERE v.deploymentid = @DeploymentId;
$q$),

-- Removes the member rows and the version row of the deployment.
('DeleteMembershipTableEntriesKey', $q$
DELETE FROM orleansmembershiptable WHERE deploymentid = @DeploymentId;
DELETE FROM orleansmembershipversiontable WHERE deploymentid = @DeploymentId;
$q$),

-- Gateways of silos in @Status (3 = Active) that actually expose a gateway port.
('GatewaysQueryKey', $q$
SELECT address, proxyport, generation
FROM orleansmembershiptable
WHERE deploymentid = @DeploymentId
  AND status = @Status
  AND proxyport > 0;
$q$),

-- Removes non-Active silo rows whose last heartbeat is older than the @IAmAliveTime cut-off.
-- (The optional CleanupDefunctSiloEntryKey is deliberately not provided: its result contract
-- is not pinned down, and without it Orleans uses this bulk query.)
('CleanupDefunctSiloEntriesKey', $q$
DELETE FROM orleansmembershiptable
WHERE deploymentid = @DeploymentId
  AND iamalivetime < @IAmAliveTime
  AND status <> 3;
$q$),

-- ---------------------------------------------------------------- persistence ------------
-- Every query locates the row by both hashes (index) AND the full key.

-- 0 or 1 row: PayloadBinary (bytea, NULL for a cleared row) and Version (the ETag).
('ReadFromStorageKey', $q$
SELECT payloadbinary, version
FROM orleansstorage
WHERE grainidhash = @GrainIdHash
  AND graintypehash = @GrainTypeHash
  AND serviceid = @ServiceId
  AND graintypestring = @GrainTypeString
  AND grainidn0 = @GrainIdN0
  AND grainidn1 = @GrainIdN1
  AND grainidextensionstring IS NOT DISTINCT FROM @GrainIdExtensionString;
$q$),

-- Returns NewGrainStateVersion:
--   @GrainStateVersion NULL  -> insert version 1; if the row already exists (e.g. a racing
--                               first writer won) the unique index makes it return no row;
--   @GrainStateVersion = n   -> update only if the stored version is n, return n + 1;
--                               otherwise no row.
-- No row (while Orleans expected one) => InconsistentStateException, i.e. an ETag conflict.
('WriteToStorageKey', $q$
WITH upd AS (
    UPDATE orleansstorage
    SET payloadbinary = @PayloadBinary,
        modifiedon = now(),
        version = version + 1
    WHERE @GrainStateVersion IS NOT NULL
      AND grainidhash = @GrainIdHash
      AND graintypehash = @GrainTypeHash
      AND serviceid = @ServiceId
      AND graintypestring = @GrainTypeString
      AND grainidn0 = @GrainIdN0
      AND grainidn1 = @GrainIdN1
      AND grainidextensionstring IS NOT DISTINCT FROM @GrainIdExtensionString
      AND version = @GrainStateVersion
    RETURNING version
), ins AS (
    INSERT INTO orleansstorage
        (grainidhash, grainidn0, grainidn1, graintypehash, graintypestring,
         grainidextensionstring, serviceid, payloadbinary, modifiedon, version)
    SELECT @GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash, @GrainTypeString,
           @GrainIdExtensionString, @ServiceId, @PayloadBinary, now(), 1
    WHERE @GrainStateVersion IS NULL
    ON CONFLICT (serviceid, graintypestring, grainidn0, grainidn1, grainidextensionstring)
        DO NOTHING
    RETURNING version
)
SELECT version AS newgrainstateversion FROM upd
UNION ALL
SELECT version AS newgrainstateversion FROM ins;
$q$),

-- Keeps the row with a NULL payload and a bumped version; Orleans reads column 0 as the new
-- ETag. Stale or NULL @GrainStateVersion -> no row -> InconsistentStateException.
('ClearStorageKey', $q$
UPDATE orleansstorage
SET payloadbinary = NULL,
    modifiedon = now(),
    version = version + 1
WHERE grainidhash = @GrainIdHash
  AND graintypehash = @GrainTypeHash
  AND serviceid = @ServiceId
  AND graintypestring = @GrainTypeString
  AND grainidn0 = @GrainIdN0
  AND grainidn1 = @GrainIdN1
  AND grainidextensionstring IS NOT DISTINCT FROM @GrainIdExtensionString
  AND version = @GrainStateVersion
RETURNING version AS newgrainstateversion;
$q$),

-- Used only with DeleteStateOnClear=true. Column 0 must be non-NULL and differ from the ETag
-- it was given, so it returns the deleted row's version + 1 (returning the version itself
-- would be reported as a conflict). Stale version -> no row -> InconsistentStateException.
('DeleteStorageKey', $q$
DELETE FROM orleansstorage
WHERE grainidhash = @GrainIdHash
  AND graintypehash = @GrainTypeHash
  AND serviceid = @ServiceId
  AND graintypestring = @GrainTypeString
  AND grainidn0 = @GrainIdN0
  AND grainidn1 = @GrainIdN1
  AND grainidextensionstring IS NOT DISTINCT FROM @GrainIdExtensionString
  AND version = @GrainStateVersion
RETURNING version + 1 AS newgrainstateversion;
$q$),

-- ---------------------------------------------------------------- reminders --------------

-- Insert with version 0, or update the reminder and bump its version. Returns column Version.
('UpsertReminderRowKey', $q$
INSERT INTO orleansremindertable
    (serviceid, grainid, remindername, starttime, period, grainhash, version)
VALUES
    (@ServiceId, @GrainId, @ReminderName, @StartTime, @Period, @GrainHash, 0)
ON CONFLICT (serviceid, grainid, remindername) DO UPDATE
SET starttime = EXCLUDED.starttime,
    period    = EXCLUDED.period,
    grainhash = EXCLUDED.grainhash,
    version   = orleansremindertable.version + 1
RETURNING version;
$q$),

('ReadReminderRowsKey', $q$
SELECT grainid, remindername, starttime, period, version
FROM orleansremindertable
WHERE serviceid = @ServiceId
  AND grainid = @GrainId;
$q$),

('ReadReminderRowKey', $q$
SELECT grainid, remindername, starttime, period, version
FROM orleansremindertable
WHERE serviceid = @ServiceId
  AND grainid = @GrainId
  AND remindername = @ReminderName;
$q$),

-- Non-wrapping range, used by Orleans when (int)begin < (int)end: signed comparisons.
('ReadRangeRows1Key', $q$
SELECT grainid, remindername, starttime, period, version
FROM orleansremindertable
WHERE serviceid = @ServiceId
  AND grainhash > @BeginHash
  AND grainhash <= @EndHash;
$q$),

-- Wrapping range, used by Orleans when (int)begin >= (int)end: signed comparisons.
('ReadRangeRows2Key', $q$
SELECT grainid, remindername, starttime, period, version
FROM orleansremindertable
WHERE serviceid = @ServiceId
  AND (grainhash > @BeginHash OR grainhash <= @EndHash);
$q$),

-- 1 column: true if the row existed with version @Version and was deleted.
('DeleteReminderRowKey', $q$
WITH del AS (
    DELETE FROM orleansremindertable
    WHERE serviceid = @ServiceId
      AND grainid = @GrainId
      AND remindername = @ReminderName
      AND version = @Version
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM del) AS deleted;
$q$),

('DeleteReminderRowsKey', $q$
DELETE FROM orleansremindertable
WHERE serviceid = @ServiceId;
$q$)

ON CONFLICT (querykey) DO UPDATE SET querytext = EXCLUDED.querytext;
