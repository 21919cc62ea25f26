namespace Spine.Pipeline;

/// <summary>Passes a call on to the rest of the pipeline.</summary>
internal delegate Task<StepOutcome> StepHandler(StepCall call, IStepRun run);

/// <summary>Passes an attempt on to the rest of the attempt pipeline.</summary>
internal delegate Task<string> AttemptHandler(StepAttempt attempt, IStepRun run);

/// <summary>
/// A stage every context call passes through, once per call. A stage may answer the call itself (from the
/// journal), refuse it (a journaled, typed outcome), wait durably, or pass it on with <c>next</c>; on the
/// way back it sees the outcome. Stages are singletons: what belongs to one run comes in <see cref="IStepRun"/>.
/// </summary>
internal interface IStepStage
{
    /// <summary>Where the stage sits: lower runs first (outer). See <see cref="StepStageOrder"/>.</summary>
    int Order { get; }

    Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next);
}

/// <summary>
/// A control that keeps state outside the run (a budget's reservations) and must square it with the journal when
/// an execution begins (after a crash, the journal says what happened) and when the run ends. Called once per
/// execution and once per end; a hook that cannot reach what it squares logs and leaves it to the next time.
/// </summary>
internal interface IRunHook
{
    /// <summary>An execution of the run begins (its journal is loaded; no step has run yet).</summary>
    Task ExecutingAsync(IStepRun run);

    /// <summary>The run's workflow is done (its compensations too); its final row is about to be written.</summary>
    Task EndingAsync(IStepRun run);

    /// <summary>
    /// The run is about to show as not executing (sleeping, waiting for a signal, an approval, an operator or its
    /// budget): from then on the recovery sweep no longer resumes it if its silo dies, so what the hook still owes
    /// the cluster for it is settled now.
    /// </summary>
    Task IdlingAsync(IStepRun run);
}

/// <summary>
/// A stage every attempt of a call passes through, inside the retry stage: it may fail the attempt (an
/// exception the retry stage classifies), or pass it on. The innermost handler runs the call.
/// </summary>
internal interface IAttemptStage
{
    /// <summary>Where the stage sits: lower runs first (outer). See <see cref="StepStageOrder"/>.</summary>
    int Order { get; }

    Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next);
}

/// <summary>
/// The order of the built-in stages. Stages of the control plane take the free places between them: a
/// call is refused or held before any attempt. A stage that refuses a call journals the refusal as the
/// step's outcome and returns it (<see cref="StepOutcome.FromJournal"/>): every outcome that reaches the
/// workflow has its journal row.
/// </summary>
internal static class StepStageOrder
{
    /// <summary>Counts a live call towards the run's status (until its outcome reached the workflow).</summary>
    public const int LiveCalls = 100;

    /// <summary>Answers recorded calls from the journal, in journal order.</summary>
    public const int Replay = 200;

    /// <summary>Policy, budget, approval and rate limits go here (300 to 599).</summary>
    public const int ControlPlane = 300;
    /// <summary>Refuses calls the run's policy does not permit (the first control: nothing is reserved or asked for a denied call).</summary>
    public const int Policy = 300;

    /// <summary>Reserves a model or priced tool call's worst case in its run's and account's budgets, and settles what it used.</summary>
    public const int Budget = 400;

    /// <summary>Registers the step's compensation before its first attempt.</summary>
    public const int Compensation = 600;

    /// <summary>Journals the outcome (outside every attempt: a failure to journal is never the step's failure).</summary>
    public const int Journal = 700;

    /// <summary>Hands a step whose retries are spent to an operator.</summary>
    public const int Escalation = 800;

    /// <summary>Runs attempts, with backoff between them; the attempt stages run inside it.</summary>
    public const int Retry = 900;

    /// <summary>Attempt stage, outermost: a span per attempt, and the attempt's metrics.</summary>
    public const int Tracing = 50;

    /// <summary>Attempt stage: resolves the tool and validates the call against its contract.</summary>
    public const int Contract = 100;

    /// <summary>
    /// Attempt stage: takes a permit of each of the call's rate limits (waiting for it, in memory or durably). Before
    /// the breaker, so that a wait for a permit never holds the breaker's probe, nor goes on its answer from before the
    /// wait, and the limiter's own failures are never counted against the tool.
    /// </summary>
    public const int RateLimit = 150;

    /// <summary>
    /// Attempt stage: takes a call's budget reservation again when an attempt begins long after it was taken (a retry
    /// after a long wait, a long wait for a rate limit's permit).
    /// </summary>
    public const int BudgetRenewal = 175;

    /// <summary>Attempt stage: asks the tool's circuit breaker, and tells it how the attempt went.</summary>
    public const int Breaker = 200;

    /// <summary>Attempt stage: bounds the attempt by the tool's timeout.</summary>
    public const int Timeout = 300;
}
