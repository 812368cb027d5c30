using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LoraCraft.Server;

/// <summary>
/// Builds the web server: Kestrel on the configured address, HTTP Basic auth on every route when
/// asked for, CORS only for listed origins, body-size limits, errors as JSON by kind (4xx for user
/// mistakes, never a 500 for them), OpenAPI for the native API, then each API's route file.
/// </summary>
public static class LoraServer
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.Never,
    };

    /// <summary>The app, not started. <paramref name="configure"/> may adjust the builder (tests: a test server).</summary>
    public static WebApplication Build(ServerOptions options, Action<WebApplicationBuilder>? configure = null, ServerEngine? engine = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "LoraCraft.Server" });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.Limits.MinRequestBodyDataRate = null;
            k.Listen(ParseHost(options.Host), options.Port);
        });
        builder.Services.Configure<FormOptions>(f => f.MultipartBodyLengthLimit = options.MaxBodyBytes);
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = Json.PropertyNamingPolicy;
            o.SerializerOptions.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowReadingFromString;
        });
        builder.Services.AddOpenApi("v1");
        builder.Services.AddSingleton(engine ?? new ServerEngine(options));
        builder.Services.AddSingleton(options);
        HubRoutes.AddServices(builder.Services);
        configure?.Invoke(builder);

        var app = builder.Build();
        app.UseExceptionHandler(e => e.Run(WriteError));
        app.Use(BodyTooLarge);
        if (options.CorsOrigins.Count > 0) app.Use(Cors(options.CorsOrigins));
        if (options.Auth.Count > 0) app.Use(BasicAuth(options.Auth));
        app.UseWebSockets();
        app.MapOpenApi("/openapi/{documentName}.json");
        NativeRoutes.Map(app);
        HubRoutes.Map(app);
        A1111Routes.Map(app);
        WebUi.WebUiRoutes.Map(app);
        Comfy.ComfyRoutes.Map(app, options);
        Training.TrainingRoutes.Map(app, options);
        Tools.ToolRoutes.Map(app);
        foreach (var extra in Extensions) extra(app, options);
        return app;
    }

    /// <summary>More route files (the web UI, the ComfyUI API) register here.</summary>
    public static List<Action<WebApplication, ServerOptions>> Extensions { get; } = [];

    static IPAddress ParseHost(string host) => host switch
    {
        "localhost" => IPAddress.Loopback,
        _ when IPAddress.TryParse(host, out var ip) => ip,
        _ => throw new UserErrorException($"host must be an IP address (127.0.0.1, ::1, 0.0.0.0), got '{host}'") { Field = "host" },
    };

    /// <summary>Whether the address is reachable from other machines.</summary>
    public static bool IsPublic(string host) => !(host is "localhost" || IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));

    /// <summary>Runs until <paramref name="stop"/>; prints `listening on http://HOST:PORT` when ready.</summary>
    public static async Task RunAsync(ServerOptions options, TextWriter log, CancellationToken stop)
    {
        await using var app = Build(options);
        await app.StartAsync(stop);
        var engine = app.Services.GetRequiredService<ServerEngine>();
        var address = Address(app);
        if (IsPublic(options.Host) && options.Auth.Count == 0)
            log.WriteLine($"warning: listening on {options.Host} without --api-auth: anyone who can reach this machine can use it");
        log.WriteLine($"checkpoints: {engine.Catalog.Root} ({engine.Catalog.Entries.Count}), LoRAs: {engine.Loras.Root} ({engine.Loras.Files.Count})");
        log.WriteLine($"listening on {address}");
        try { await Task.Delay(Timeout.Infinite, stop); }
        catch (OperationCanceledException) { }
        await app.StopAsync(CancellationToken.None);
        engine.Dispose();
    }

    /// <summary>The address the started server listens on (the real port when 0 was asked for).</summary>
    public static string Address(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses;
        return addresses?.FirstOrDefault() ?? app.Urls.First();
    }

    /// <summary>The HTTP status of an error kind.</summary>
    public static int Status(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => 404,
        ErrorKind.Conflict => 409,
        ErrorKind.Unsupported => 422,
        ErrorKind.Busy => 503,
        _ => 400,
    };

    static async Task WriteError(HttpContext context)
    {
        var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
        var (status, kind, message) = Classify(error);
        context.Response.StatusCode = status;
        if (context.Request.Path.StartsWithSegments("/sdapi"))
            await context.Response.WriteAsJsonAsync(A1111Routes.Error(error, status, message));
        else
            await context.Response.WriteAsJsonAsync(new { error = new { kind = kind.ToString().ToLowerInvariant(), message, field = (error as UserErrorException)?.Field } });
    }

    /// <summary>Status, kind and message of an exception from a handler: user mistakes are 4xx, bugs 500.</summary>
    public static (int Status, ErrorKind Kind, string Message) Classify(Exception? e)
    {
        if (e is Microsoft.AspNetCore.Http.BadHttpRequestException bad) return (bad.StatusCode, ErrorKind.Invalid, bad.Message);
        if (e is JsonException json) return (400, ErrorKind.Invalid, "the request body is not valid JSON: " + json.Message);
        if (e is FormatException f) return (400, ErrorKind.Invalid, f.Message);
        if (e is not null && LoraCraft.Generation.JobQueue.UserFacing(e) is var (kind, message)) return (Status(kind), kind, message);
        return (500, ErrorKind.Invalid, "internal error: " + (e?.Message.Split('\n')[0].Trim() ?? "unknown"));
    }

    static async Task BodyTooLarge(HttpContext context, Func<Task> next)
    {
        var limit = context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
        if (limit is { } l && context.Request.ContentLength is { } length && length > l)
        {
            context.Response.StatusCode = 413;
            await context.Response.WriteAsJsonAsync(new { error = new { kind = "invalid", message = $"the request body is {length} bytes; the limit is {l}" } });
            return;
        }
        await next();
    }

    static Func<HttpContext, Func<Task>, Task> Cors(IReadOnlyList<string> origins) => async (context, next) =>
    {
        string? origin = context.Request.Headers.Origin;
        if (origin is not null && (origins.Contains("*") || origins.Contains(origin, StringComparer.OrdinalIgnoreCase)))
        {
            context.Response.Headers.AccessControlAllowOrigin = origins.Contains("*") ? "*" : origin;
            context.Response.Headers.AccessControlAllowMethods = "GET, POST, PUT, DELETE, PATCH, OPTIONS";
            context.Response.Headers.AccessControlAllowHeaders = "Authorization, Content-Type, Comfy-User";
            if (HttpMethods.IsOptions(context.Request.Method))
            {
                context.Response.StatusCode = 200;
                return;
            }
        }
        await next();
    };

    /// <summary>HTTP Basic on every route (A1111's --api-auth); credentials compared in constant time.</summary>
    static Func<HttpContext, Func<Task>, Task> BasicAuth(IReadOnlyList<(string User, string Password)> users)
    {
        var expected = users.Select(u => SHA256.HashData(Encoding.UTF8.GetBytes(u.User + ":" + u.Password))).ToList();
        return async (context, next) =>
        {
            string? header = context.Request.Headers.Authorization;
            bool ok = false;
            if (header is not null && header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
            {
                byte[] given;
                try { given = SHA256.HashData(Convert.FromBase64String(header[6..].Trim())); }
                catch (FormatException) { given = new byte[32]; }
                // every candidate is compared, each in constant time
                foreach (var e in expected) ok |= CryptographicOperations.FixedTimeEquals(given, e);
            }
            if (!ok)
            {
                context.Response.StatusCode = 401;
                context.Response.Headers.WWWAuthenticate = "Basic realm=\"loracraft\"";
                await context.Response.WriteAsJsonAsync(new { error = new { kind = "unauthorized", message = "authentication required" }, detail = "Not authenticated" });
                return;
            }
            await next();
        };
    }
}
