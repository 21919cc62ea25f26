namespace Spine.Budgets;

/// <summary>
/// Budgets (<c>Spine:Budgets</c>): how long a reservation lives, what models cost, and how each workflow type
/// degrades as its account's or its own budget runs out.
/// </summary>
public sealed class BudgetOptions
{
    /// <summary>A reservation whose run neither settles nor releases it within this time expires (its run died and never came back).</summary>
    public TimeSpan ReservationTtl { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Prices per million tokens, by model id (the call's <c>ChatOptions.ModelId</c>, else the client's default
    /// model), else by chat client key (<c>default</c> for the unkeyed client), else under <c>*</c>. A model without
    /// a price costs nothing, but its tokens still count.
    /// </summary>
    public Dictionary<string, ModelPrice> Prices { get; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The output tokens a model call is reserved for when it does not set <c>ChatOptions.MaxOutputTokens</c>.</summary>
    public int DefaultMaxOutputTokens { get; set; } = 4096;

    /// <summary>How runs of a workflow type degrade, by type; <c>*</c> for every other type.</summary>
    public Dictionary<string, WorkflowBudget> Workflows { get; } = new(StringComparer.Ordinal);

    /// <summary>The settings for a workflow type (its own, else <c>*</c>'s, else the defaults).</summary>
    public WorkflowBudget For(string workflowType) =>
        Workflows.GetValueOrDefault(workflowType) ?? Workflows.GetValueOrDefault("*") ?? WorkflowBudget.Default;
}

/// <summary>What a model's tokens cost, per million.</summary>
public sealed class ModelPrice
{
    /// <summary>Per million input tokens.</summary>
    public decimal InputPerMillion { get; set; }

    /// <summary>Per million output tokens.</summary>
    public decimal OutputPerMillion { get; set; }

    /// <summary>
    /// The tiktoken encoding input is counted with (<c>o200k_base</c> or <c>cl100k_base</c>); null: the model's own
    /// when the tokenizer knows the model, else <c>o200k_base</c>.
    /// </summary>
    public string? Encoding { get; set; }
}

/// <summary>What a run does when a call would pass its budget.</summary>
public enum BudgetExhaustedAction
{
    /// <summary>The call fails with <c>budget_exhausted</c> (<see cref="Errors.BudgetExhaustedException"/>).</summary>
    Stop,

    /// <summary>
    /// The run waits, durably (status <see cref="Runs.RunStatus.AwaitingBudget"/>), until the account's daily window
    /// resets, then asks again. A call that only a total or a run ceiling refuses stops instead: waiting would not help.
    /// </summary>
    Pause,
}

/// <summary>A workflow type's run ceilings and degradation thresholds.</summary>
public sealed class WorkflowBudget
{
    /// <summary>The defaults: warn at 80%, no cheaper client, stop when a call does not fit.</summary>
    public static WorkflowBudget Default { get; } = new();

    /// <summary>Tokens each run may use, unless its start sets its own.</summary>
    public long? RunMaxTokens { get; set; }

    /// <summary>What each run may cost, unless its start sets its own.</summary>
    public decimal? RunMaxCost { get; set; }

    /// <summary>From this used fraction of a ceiling (0..1], a reservation is journaled and logged with a warning. Null: never.</summary>
    public double? WarnAt { get; set; } = 0.8;

    /// <summary>From this used fraction (0..1], model calls go to <see cref="DowngradeTo"/>; they also do when only it fits.</summary>
    public double? DowngradeAt { get; set; }

    /// <summary>The keyed chat client that is cheaper; null: no downgrade.</summary>
    public string? DowngradeTo { get; set; }

    /// <summary>The model a downgraded call asks for (its <c>ChatOptions.ModelId</c>); null: the cheaper client's own default.</summary>
    public string? DowngradeModel { get; set; }

    /// <summary>What a call that does not fit does.</summary>
    public BudgetExhaustedAction OnExhausted { get; set; } = BudgetExhaustedAction.Stop;
}
