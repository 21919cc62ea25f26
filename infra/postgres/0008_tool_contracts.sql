-- Every tool contract any silo has registered: one row per tool and version, written when a silo first starts with
-- it and never changed, so a version's contract cannot change under the runs that pinned it (a silo that registers
-- the same version with a different schema is refused), and a breaking change is caught against versions no silo
-- registers any more.
--   digest         SHA-256 of the input and output schemas as compact JSON
--   registered_at  when a silo first registered the version
CREATE TABLE spine_tool_contracts
(
    name          text        NOT NULL,
    version       text        NOT NULL,
    digest        bytea       NOT NULL,
    description   text        NOT NULL,
    input_schema  text        NOT NULL,
    output_schema text        NOT NULL,
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (name, version)
);

REVOKE ALL ON spine_tool_contracts FROM spine_runtime;
GRANT SELECT, INSERT ON spine_tool_contracts TO spine_runtime;
