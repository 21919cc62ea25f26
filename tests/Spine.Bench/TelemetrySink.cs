using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Spine.Bench;

/// <summary>
/// Tracing and metrics as a silo exports them (the sources and meters the shipped host adds, the batch span processor,
/// a periodic metric reader), to exporters that only count: the cost measured is collecting and handing over, not a
/// network.
/// </summary>
internal sealed class TelemetrySink : IDisposable
{
    private readonly CountingSpans _spans = new();
    private readonly CountingMetrics _metrics = new();
    private readonly TracerProvider _tracing;
    private readonly MeterProvider _meters;

    private TelemetrySink()
    {
        _tracing = Sdk.CreateTracerProviderBuilder()
            .AddSource("Spine", "Microsoft.Orleans.Application", "Microsoft.Orleans.Runtime", "Npgsql")
            .AddProcessor(new BatchActivityExportProcessor(_spans))
            .Build();
        _meters = Sdk.CreateMeterProviderBuilder()
            .AddMeter("Spine", "Microsoft.Orleans")
            .AddReader(new PeriodicExportingMetricReader(_metrics, exportIntervalMilliseconds: 1000))
            .Build();
    }

    public static TelemetrySink Start() => new();

    /// <summary>Flushes and stops; returns how many spans and metric points were exported.</summary>
    public (long Spans, long MetricPoints) Stop()
    {
        _tracing.ForceFlush();
        _meters.ForceFlush();
        return (Interlocked.Read(ref _spans.Count), Interlocked.Read(ref _metrics.Count));
    }

    public void Dispose()
    {
        _tracing.Dispose();
        _meters.Dispose();
    }

    private sealed class CountingSpans : BaseExporter<Activity>
    {
        public long Count;

        public override ExportResult Export(in Batch<Activity> batch)
        {
            Interlocked.Add(ref Count, batch.Count);
            return ExportResult.Success;
        }
    }

    private sealed class CountingMetrics : BaseExporter<Metric>
    {
        public long Count;

        public override ExportResult Export(in Batch<Metric> batch)
        {
            long points = 0;
            foreach (var metric in batch)
            {
                foreach (ref readonly var point in metric.GetMetricPoints())
                {
                    points++;
                }
            }

            Interlocked.Add(ref Count, points);
            return ExportResult.Success;
        }
    }
}
