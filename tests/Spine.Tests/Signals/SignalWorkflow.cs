using Spine.Errors;
using Spine.Workflows;

namespace Spine.Tests.Signals;

/// <summary>What <see cref="SignalWorkflow"/> waits for.</summary>
public sealed record SignalInput(string Name, int Count = 1, int TimeoutMilliseconds = -1, int SleepFirstMilliseconds = 0);

/// <summary>Waits for <see cref="SignalInput.Count"/> signals of one name, after an optional sleep; a timeout reads as "timeout".</summary>
[Workflow("test.signals")]
public sealed class SignalWorkflow : IWorkflow<SignalInput, string[]>
{
    public async Task<string[]> RunAsync(IWorkflowContext context, SignalInput input)
    {
        if (input.SleepFirstMilliseconds > 0)
        {
            await context.SleepAsync(TimeSpan.FromMilliseconds(input.SleepFirstMilliseconds));
        }

        var timeout = input.TimeoutMilliseconds < 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromMilliseconds(input.TimeoutMilliseconds);
        var received = new List<string>();
        for (var i = 0; i < input.Count; i++)
        {
            try
            {
                received.Add(await context.WaitForSignalAsync<string>(input.Name, timeout));
            }
            catch (SignalTimeoutException)
            {
                received.Add("timeout");
            }
        }

        await context.RunAsync("after", _ => Task.FromResult(received.Count));
        return received.ToArray();
    }
}
