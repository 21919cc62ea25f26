namespace Spine.Secrets;

/// <summary>Where the default secret providers look (section <c>Spine:Secrets</c>).</summary>
public sealed class SecretOptions
{
    /// <summary>A folder holding one file per secret, named as the secret (its content, without a trailing newline, is the value); read at each attempt. Null: no files.</summary>
    public string? Directory { get; set; }

    /// <summary>The prefix of the environment variables holding secrets: <c>SPINE_SECRET_PAYMENTS_KEY</c> holds <c>payments_key</c>. Null or empty: no environment variables.</summary>
    public string? EnvironmentPrefix { get; set; } = "SPINE_SECRET_";
}
