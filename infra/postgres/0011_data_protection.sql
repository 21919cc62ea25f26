-- The silos' one ASP.NET Core Data Protection key ring (silo/WebConsole/PostgresXmlRepository.cs): the keys that
-- encrypt the console's cookies and antiforgery tokens, so that a sign-in holds on every silo and across restarts.
-- Keys are added, never changed; the runtime may read and add them.
CREATE TABLE IF NOT EXISTS spine_data_protection_keys
(
    friendly_name text        NOT NULL PRIMARY KEY,
    xml           text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON spine_data_protection_keys TO spine_runtime;
