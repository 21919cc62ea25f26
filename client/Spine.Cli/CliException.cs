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

    /// <summary><c>configuration</c> (how to reach the cluster) or <c>invalid_arguments</c> (what to do).</summary>
    public string Kind { get; }

    /// <summary>2 for configuration (as for an unreachable cluster), 1 for arguments (as for a refused request).</summary>
    public int ExitCode { get; }

    /// <summary>The connection settings are missing or malformed.</summary>
    public static CliException Configuration(string message, Exception? innerException = null) => new("configuration", 2, message, innerException);

    /// <summary>The command's arguments cannot be used: a file that cannot be read, options that exclude each other.</summary>
    public static CliException InvalidArguments(string message, Exception? innerException = null) => new("invalid_arguments", 1, message, innerException);
}
