namespace Spine.Cli;

/// <summary>An error the CLI finds itself, before or without asking the cluster.</summary>
internal sealed class CliException : Exception
{
    private CliException(string kind, int exitCode, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Kind = kind;
        ExitCode = exitCode;
    }

    /// <summary><c>configuration</c>: how to reach the cluster.</summary>
    public string Kind { get; }

    /// <summary>2, as for an unreachable cluster.</summary>
    public int ExitCode { get; }

    /// <summary>The connection settings are missing or malformed.</summary>
    public static CliException Configuration(string message, Exception? innerException = null) => new("configuration", 2, message, innerException);
}
