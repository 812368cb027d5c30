using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace LoraCraft.Tests.Server;

/// <summary>Helpers of the job-based API tests: submit and wait, follow the SSE stream, post and read an error.</summary>
public static class ServerJobs
{
    /// <summary>Posts a job request and waits for its end; returns the job status (state, result, error).</summary>
    public static async Task<JsonElement> RunAsync(ServerFixture server, string path, object body, TimeSpan? limit = null)
    {
        var submitted = await server.PostJson(path, body);
        return await WaitAsync(server, submitted.GetProperty("id").GetString()!, limit);
    }

    public static async Task<JsonElement> WaitAsync(ServerFixture server, string id, TimeSpan? limit = null)
    {
        for (var until = DateTime.UtcNow + (limit ?? TimeSpan.FromMinutes(3)); DateTime.UtcNow < until; await Task.Delay(100))
        {
            var status = await server.GetJson($"/api/v1/jobs/{id}");
            if (status.GetProperty("state").GetString() is "completed" or "failed" or "cancelled") return status;
        }
        throw new TimeoutException($"job {id} did not finish");
    }

    /// <summary>The SSE stream of a job until it ends: (event, data) pairs; <paramref name="onEvent"/> sees each as it comes.</summary>
    public static async Task<List<(string Event, JsonElement Data)>> EventsAsync(ServerFixture server, string id, Func<string, JsonElement, Task>? onEvent = null)
    {
        var events = new List<(string, JsonElement)>();
        using var stream = await server.Http.GetStreamAsync($"/api/v1/jobs/{id}/events");
        using var reader = new StreamReader(stream);
        string? type = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) type = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                var data = JsonDocument.Parse(line[6..]).RootElement.Clone();
                events.Add((type!, data));
                if (onEvent is not null) await onEvent(type!, data);
            }
        }
        return events;
    }

    /// <summary>Posts and returns the status with the JSON body (errors included).</summary>
    public static async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(ServerFixture server, string path, object body)
    {
        using var response = await server.Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The error kind of a refused request, after checking it is a 4xx with a JSON message.</summary>
    public static string ErrorKind(HttpStatusCode status, JsonElement body)
    {
        Xunit.Assert.True((int)status is >= 400 and < 500, $"expected a 4xx, got {(int)status}: {body}");
        var error = body.GetProperty("error");
        Xunit.Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        return error.GetProperty("kind").GetString()!;
    }
}
