namespace Spine.Local.Postgres;

/// <summary>A step of starting or stopping a <see cref="LocalPostgresServer"/> failed; the message says which and why.</summary>
public sealed class LocalPostgresException : Exception
{
    /// <summary>Creates the exception with a default message.</summary>
    public LocalPostgresException()
        : base("Local PostgreSQL server operation failed.")
    {
    }

    /// <summary>Creates the exception with a message naming what failed.</summary>
    /// <param name="message">What failed, including any tool output.</param>
    public LocalPostgresException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    /// <param name="message">What failed, including any tool output.</param>
    /// <param name="innerException">The underlying error.</param>
    public LocalPostgresException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
