using Npgsql;

namespace Spine.Client;

/// <summary>
/// Keeps passwords off command lines, where every user of the machine sees them (<c>ps</c>, <c>/proc</c>) and
/// shells keep them in their history.
/// </summary>
public static class CommandLineSecrets
{
    /// <summary>Why a connection string given as a command-line option may not be used (it holds a password); null when it may.</summary>
    /// <param name="connectionString">The option's value.</param>
    /// <param name="option">The option, e.g. <c>--connection</c>.</param>
    /// <param name="variable">The environment variable that may hold the whole connection string instead.</param>
    public static string? PasswordProblem(string connectionString, string option, string variable)
    {
        NpgsqlConnectionStringBuilder parsed;
        try
        {
            parsed = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException)
        {
            // Malformed: whoever opens it says so, naming what is wrong.
            return null;
        }

        return string.IsNullOrEmpty(parsed.Password) ? null
            : $"{option} holds a password, which every user of this machine can read on a command line: leave it out and set PGPASSWORD, "
                + $"or name a pgpass file (Passfile=... or PGPASSFILE), or put the whole connection string in {variable}";
    }
}
