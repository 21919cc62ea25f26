using Npgsql;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Audit;

/// <summary>The journal's head trigger on its own, with the runtime login: what it lets through and what it refuses.</summary>
[Collection(ClusterCollection.Name)]
public sealed class JournalTriggerTests(ClusterFixture fixture)
{
    // Rows seq from..to of a run with hash = sha256(run || seq) and each prev_hash the previous row's (zeros for seq 0);
    // kinds: 1 (a step) unless listed.
    private const string Rows = """
        INSERT INTO spine_journal (run_id, seq, kind, name, ok, recorded_at, prev_hash, hash, key_id)
        SELECT @run, s, COALESCE((@kinds::smallint[])[s + 1], 1::smallint), 'r', true, now(),
               CASE WHEN s = 0 THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                    ELSE sha256(convert_to(@run || (s - 1 + @link_offset), 'UTF8')) END,
               sha256(convert_to(@run || s, 'UTF8')), CASE WHEN @signed THEN 'k' END
        FROM generate_series(@from, @to) s
        """;

    [Fact]
    public async Task ThousandsOfRowsOfOneRunInOneInsert_AreAccepted_AndTheHeadIsTheirLast()
    {
        var run = NewRun();

        await InsertAsync(run, 0, 5_000);

        Assert.Equal(5_000, await fixture.Postgres.ScalarAsync<int>("SELECT seq FROM spine_journal_heads WHERE run_id = @id", ("id", run)));
    }

    [Fact]
    public async Task RowsThatSkipASeq_OrDoNotLink_OrFollowTheHeadWrongly_AreRefused()
    {
        var run = NewRun();
        await InsertAsync(run, 0, 3);

        var gap = await RefusedAsync(() => InsertAsync(run, 5, 6));
        var unlinked = await RefusedAsync(() => InsertAsync(run, 4, 6, linkOffset: 1));
        var early = await RefusedAsync(() => InsertAsync(NewRun(), 1, 2));

        Assert.Equal("SPJ01", gap.SqlState);
        Assert.Equal("SPJ01", unlinked.SqlState);
        Assert.Equal("SPJ01", early.SqlState);
        await InsertAsync(run, 4, 4);
    }

    [Fact]
    public async Task RowsAfterTheEnd_AreRefused_ButADeadLetteredRunTakesItsDiscard()
    {
        var completed = NewRun();
        var deadLettered = NewRun();
        await InsertAsync(completed, 0, 2, kinds: [0, 1, 30]);
        await InsertAsync(deadLettered, 0, 1, kinds: [0, 33]);

        var afterEnd = await RefusedAsync(() => InsertAsync(completed, 3, 3));
        var inOneInsert = await RefusedAsync(() => InsertAsync(NewRun(), 0, 2, kinds: [0, 30, 1]));
        var twoEndsInOneInsert = await RefusedAsync(() => InsertAsync(NewRun(), 0, 2, kinds: [0, 30, 34]));
        var twoDiscardsInOneInsert = await RefusedAsync(() => InsertAsync(NewRun(), 0, 3, kinds: [0, 33, 34, 34]));
        var stepAfterDeadLetter = await RefusedAsync(() => InsertAsync(deadLettered, 2, 2));
        await InsertAsync(deadLettered, 2, 2, kinds: [0, 33, 34]);
        var afterDiscard = await RefusedAsync(() => InsertAsync(deadLettered, 3, 3, kinds: [0, 33, 34, 34]));

        Assert.Equal("SPJ01", afterEnd.SqlState);
        Assert.Equal("SPJ01", inOneInsert.SqlState);
        Assert.Equal("SPJ01", twoEndsInOneInsert.SqlState);
        Assert.Equal("SPJ01", twoDiscardsInOneInsert.SqlState);
        Assert.Equal("SPJ01", stepAfterDeadLetter.SqlState);
        Assert.Equal("SPJ01", afterDiscard.SqlState);
    }

    private static string NewRun() => "trg-" + Guid.NewGuid().ToString("N");

    [Fact]
    public async Task UnsignedRows_AreRefused()
    {
        var error = await RefusedAsync(() => InsertAsync(NewRun(), 0, 1, signed: false));

        Assert.Equal("SPJ02", error.SqlState);
    }

    [Fact]
    public async Task ATemporaryHeadsTableOfTheRuntimeLogin_DoesNotStandInForTheRealOne()
    {
        var completed = NewRun();
        await InsertAsync(completed, 0, 1, kinds: [0, 30]);
        await using var data = NpgsqlDataSource.Create(fixture.Postgres.RuntimeConnectionString);
        await using var connection = await data.OpenConnectionAsync();
        await using (var shadow = new NpgsqlCommand("""
            CREATE TEMP TABLE spine_journal_heads (run_id text PRIMARY KEY, seq integer, mac bytea, state smallint, legacy_rows integer DEFAULT 0, updated_at timestamptz);
            INSERT INTO spine_journal_heads VALUES (@run, 1, sha256(convert_to(@run || 1, 'UTF8')), 0, 0, now());
            """, connection))
        {
            shadow.Parameters.AddWithValue("run", completed);
            await shadow.ExecuteNonQueryAsync();
        }

        var error = await RefusedAsync(() => InsertAsync(completed, 2, 2, connection: connection));

        Assert.Equal("SPJ01", error.SqlState);
    }

    private async Task InsertAsync(string run, int from, int to, int linkOffset = 0, short[]? kinds = null, bool signed = true, NpgsqlConnection? connection = null)
    {
        await using var data = NpgsqlDataSource.Create(fixture.Postgres.RuntimeConnectionString);
        await using var command = connection is null ? data.CreateCommand(Rows) : new NpgsqlCommand(Rows, connection);
        command.Parameters.AddWithValue("signed", signed);
        command.Parameters.AddWithValue("run", run);
        command.Parameters.AddWithValue("from", from);
        command.Parameters.AddWithValue("to", to);
        command.Parameters.AddWithValue("link_offset", linkOffset);
        command.Parameters.Add(new NpgsqlParameter<short[]>("kinds", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Smallint) { TypedValue = kinds ?? [] });
        await command.ExecuteNonQueryAsync();
    }

    private static Task<PostgresException> RefusedAsync(Func<Task> insert) => Assert.ThrowsAsync<PostgresException>(insert);
}
