using Spine.Errors;
using Spine.Runs;

namespace Spine.Identity;

/// <summary>
/// Who asks for something of a run (a start, a signal, an approval, an operator action, a query): an id
/// and the roles it holds. A run records who started it; every journaled decision records who made it, so
/// the hash chain covers it.
/// </summary>
/// <param name="Id">The actor's id, e.g. <c>svc:billing</c> or <c>alice@example.com</c>: printable text, not empty.</param>
/// <param name="Roles">The roles the actor holds, e.g. <c>operator</c>, <c>approver</c>; none when null.</param>
/// <remarks>One constructor only: the journal stores actors as JSON and reads them back through it.</remarks>
[GenerateSerializer, Immutable, Alias("spine.Actor")]
public sealed record SpineActor([property: Id(0)] string Id, IReadOnlyList<string>? Roles = null)
{
    /// <summary>The roles the actor holds (ordinal names).</summary>
    [Id(1)]
    public IReadOnlyList<string> Roles { get; init; } = Roles ?? [];

    /// <summary>Whether the actor holds <paramref name="role"/> (ordinal comparison).</summary>
    public bool HasRole(string role) => Roles.Contains(role, StringComparer.Ordinal);

    /// <summary>Refuses an empty id and control characters in the id or a role, with a typed error.</summary>
    /// <exception cref="InvalidIdentifierException">The id is empty or the id or a role holds a control character.</exception>
    public void Check()
    {
        if (string.IsNullOrWhiteSpace(Id))
        {
            throw new InvalidIdentifierException("actor id", 0);
        }

        RunIds.CheckIdentifier(Id, "actor id");
        foreach (var role in Roles ?? [])
        {
            if (string.IsNullOrWhiteSpace(role))
            {
                throw new InvalidIdentifierException($"role of actor '{Id}'", 0);
            }

            RunIds.CheckIdentifier(role, $"role of actor '{Id}'");
        }
    }

    /// <summary>The actor as a journal, log or CLI line shows it: <c>id [role, role]</c>.</summary>
    public override string ToString() => Roles is { Count: > 0 } ? $"{Id} [{string.Join(", ", Roles)}]" : Id;
}
