using Spine.Errors;

namespace Spine.Silo.Admin;

/// <summary>
/// Turns Spine's typed errors into RFC 9457 problem responses: the error's kind is the problem's <c>type</c>
/// (<c>urn:spine:error:&lt;kind&gt;</c>) and picks the status code; nothing else escapes as a 500 with a stack trace.
/// </summary>
internal sealed class AdminProblems : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        try
        {
            return await next(context);
        }
        catch (SpineException e) when (e.Kind is "storage_unavailable")
        {
            // Its message names hosts and the driver's error: for the silo's log, not for every viewer.
            context.HttpContext.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger<AdminProblems>()
                .LogWarning(e, "Admin API request {Path} failed: storage unavailable", context.HttpContext.Request.Path);
            return Problem(e.Kind, "PostgreSQL is unreachable; nothing was changed. Try again.");
        }
        catch (SpineException e)
        {
            return Problem(e.Kind, e.Message);
        }
        catch (ArgumentException e)
        {
            return Problem("invalid_argument", e.Message);
        }
    }

    /// <summary>The problem response for an error of <paramref name="kind"/>.</summary>
    public static IResult Problem(string kind, string detail) =>
        Results.Problem(detail: detail, statusCode: StatusOf(kind), title: kind, type: "urn:spine:error:" + kind);

    /// <summary>The HTTP status of an error kind.</summary>
    public static int StatusOf(string kind) => kind switch
    {
        "run_not_found" or "unknown_account" or "unknown_tool" or "unknown_workflow" => StatusCodes.Status404NotFound,
        "invalid_payload" or "schema_validation" or "invalid_identifier" or "invalid_argument" => StatusCodes.Status400BadRequest,
        "payload_too_large" => StatusCodes.Status413PayloadTooLarge,
        "approval_forbidden" => StatusCodes.Status403Forbidden,
        "approval_not_pending" or "invalid_run_state" or "idempotency_key_conflict" or "journal_conflict" or "journal_tampered"
            => StatusCodes.Status409Conflict,
        "storage_unavailable" or "cluster_unavailable" => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };
}
