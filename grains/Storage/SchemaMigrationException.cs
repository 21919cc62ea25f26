using Spine.Errors;

namespace Spine.Storage;

/// <summary>
/// The schema could not be brought up to date: a migration failed, or one this database already applied differs
/// from the embedded file (it was edited after it was applied). The message names the migration.
/// </summary>
[GenerateSerializer, Alias("spine.SchemaMigrationException")]
public sealed class SchemaMigrationException : SpineException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="set">Which set of migrations: the product's schema or the demo's.</param>
    /// <param name="script">The migration at fault, when one is.</param>
    /// <param name="message">What went wrong and what to do.</param>
    /// <param name="innerException">The migration library's or the driver's exception.</param>
    public SchemaMigrationException(string set, string? script, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Set = set;
        Script = script;
    }

    /// <summary>Which set of migrations: the product's schema or the demo's.</summary>
    [Id(0)] public string Set { get; private set; }

    /// <summary>The migration at fault (a file name such as <c>0002_spine.sql</c>), when one is.</summary>
    [Id(1)] public string? Script { get; private set; }

    /// <inheritdoc />
    public override string Kind => "schema_migration";
}
