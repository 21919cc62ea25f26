using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Spine.Storage;

namespace Spine.Silo.WebConsole;

/// <summary>
/// The Data Protection key ring in PostgreSQL (<c>spine_data_protection_keys</c>, migration 0011), shared by every silo
/// of the database: a cookie one silo issued is read by the others and after a restart. The keys are stored as Data
/// Protection writes them (not encrypted at rest unless the host adds <c>ProtectKeysWith*</c>); the database's own
/// access control guards them, as it guards the journal.
/// </summary>
internal sealed class PostgresXmlRepository(SpineDatabase database) : IXmlRepository
{
    public IReadOnlyCollection<XElement> GetAllElements()
    {
        using var command = database.DataSource.CreateCommand("SELECT xml FROM spine_data_protection_keys ORDER BY created_at");
        using var reader = command.ExecuteReader();
        var elements = new List<XElement>();
        while (reader.Read())
        {
            elements.Add(XElement.Parse(reader.GetString(0)));
        }

        return elements;
    }

    public void StoreElement(XElement element, string friendlyName)
    {
        ArgumentNullException.ThrowIfNull(element);
        using var command = database.DataSource.CreateCommand(
            "INSERT INTO spine_data_protection_keys (friendly_name, xml) VALUES (@name, @xml) ON CONFLICT (friendly_name) DO NOTHING");
        command.Parameters.AddWithValue("name", friendlyName);
        command.Parameters.AddWithValue("xml", element.ToString(SaveOptions.DisableFormatting));
        command.ExecuteNonQuery();
    }
}
