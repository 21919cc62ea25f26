using System.Net;
using System.Net.Sockets;
using Npgsql;
using Spine.Errors;

namespace Spine.Recovery;

/// <summary>
/// The default answer to "is this failure worth retrying?". A tool (<see cref="Tools.ToolDefinition.ClassifyError"/>)
/// or a step (<see cref="Workflows.StepOptions.ClassifyError"/>) may answer first; code may also throw
/// <see cref="TransientException"/> or <see cref="TerminalException"/>.
/// </summary>
public static class ErrorClassifier
{
    /// <summary>Classifies an exception thrown by a step attempt.</summary>
    public static ErrorClass Classify(Exception exception, Func<Exception, ErrorClass?>? custom = null)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (custom?.Invoke(exception) is { } decided)
        {
            return decided;
        }

        return exception switch
        {
            TransientException or RateLimitedException => ErrorClass.Transient,
            TerminalException => ErrorClass.Terminal,
            CircuitOpenException => ErrorClass.CircuitOpen,
            RunCancelledException => ErrorClass.Cancelled,
            NonDeterminismException => ErrorClass.NonDeterminism,
            SchemaValidationException or InvalidPayloadException or UnknownToolException or PayloadTooLargeException => ErrorClass.Terminal,
            HttpRequestException { StatusCode: { } status } => IsTransientStatus(status) ? ErrorClass.Transient : ErrorClass.Terminal,
            HttpRequestException => ErrorClass.Transient,
            TimeoutException or TaskCanceledException or OperationCanceledException => ErrorClass.Transient,
            SocketException or IOException => ErrorClass.Transient,
            NpgsqlException { IsTransient: true } => ErrorClass.Transient,
            StorageUnavailableException => ErrorClass.Transient,
            ArgumentException or InvalidOperationException or FormatException or ArithmeticException
                or NotSupportedException or NullReferenceException or KeyNotFoundException => ErrorClass.Terminal,
            _ when exception.InnerException is { } inner && inner != exception => Classify(inner),
            _ => ErrorClass.Transient,
        };
    }

    /// <summary>HTTP 408, 429 and 5xx are worth retrying.</summary>
    public static bool IsTransientStatus(HttpStatusCode status) =>
        status is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests || (int)status >= 500;
}
