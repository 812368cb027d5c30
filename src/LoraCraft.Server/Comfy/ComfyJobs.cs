using System.Text.Json.Nodes;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// ComfyUI's /api/jobs view (comfy_execution/jobs.py): queued, running and finished prompts as
/// one list of jobs with status pending / in_progress / completed / failed, times in ms, the
/// output count and the first previewable output.
/// </summary>
public static class ComfyJobs
{
    public static IEnumerable<JsonObject> All(ComfyService comfy) =>
        comfy.Running.Select(j => Queued((ComfyPromptRecord)j.Request!, "in_progress"))
            .Concat(comfy.Pending.Select(j => Queued((ComfyPromptRecord)j.Request!, "pending")))
            .Concat(comfy.History().Select(h => Finished(h, full: false)));

    public static JsonObject? One(ComfyService comfy, string id)
    {
        if (comfy.History().LastOrDefault(h => h.Prompt.Id == id) is { } h) return Finished(h, full: true);
        if (comfy.Running.FirstOrDefault(j => j.Id == id) is { } r) return Queued((ComfyPromptRecord)r.Request!, "in_progress");
        if (comfy.Pending.FirstOrDefault(j => j.Id == id) is { } p) return Queued((ComfyPromptRecord)p.Request!, "pending");
        return null;
    }

    static JsonObject Queued(ComfyPromptRecord p, string status)
    {
        var job = new JsonObject { ["id"] = p.Id, ["status"] = status, ["priority"] = p.Number, ["create_time"] = p.CreateTime, ["outputs_count"] = 0 };
        if (WorkflowId(p) is { } w) job["workflow_id"] = w;
        return job;
    }

    static string? WorkflowId(ComfyPromptRecord p) => p.ExtraData["extra_pnginfo"]?["workflow"]?["id"]?.ToString();

    static JsonObject Finished(ComfyHistoryEntry h, bool full)
    {
        var p = h.Prompt;
        var job = new JsonObject
        {
            ["id"] = p.Id, ["status"] = h.Status == "success" ? "completed" : "failed", ["priority"] = p.Number, ["create_time"] = p.CreateTime,
        };
        foreach (var m in h.Messages.OfType<JsonArray>())
        {
            string? name = m[0]?.ToString();
            var data = m[1] as JsonObject;
            if (name == "execution_start") job["execution_start_time"] = data?["timestamp"]?.DeepClone();
            if (name is "execution_success" or "execution_error" or "execution_interrupted")
            {
                job["execution_end_time"] = data?["timestamp"]?.DeepClone();
                if (name == "execution_error") job["execution_error"] = data?.DeepClone();
            }
        }
        int count = 0;
        JsonObject? preview = null, fallback = null;
        foreach (var (node, outputs) in h.Outputs)
        {
            if (outputs is not JsonObject o) continue;
            foreach (var (media, items) in o)
            {
                if (media == "animated" || items is not JsonArray list) continue;
                foreach (var item in list.OfType<JsonObject>())
                {
                    count++;
                    if (preview is not null || media is not ("images" or "video" or "audio")) continue;
                    var enriched = (JsonObject)item.DeepClone();
                    enriched["nodeId"] = node;
                    enriched["mediaType"] = media;
                    if (item["type"]?.ToString() == "output") preview = enriched;
                    else fallback ??= enriched;
                }
            }
        }
        job["outputs_count"] = count;
        if ((preview ?? fallback) is { } pv) job["preview_output"] = pv;
        if (WorkflowId(p) is { } w) job["workflow_id"] = w;
        if (full)
        {
            var entry = h.ToJson();
            job["outputs"] = entry["outputs"]!.DeepClone();
            job["execution_status"] = entry["status"]!.DeepClone();
            job["workflow"] = new JsonObject { ["prompt"] = p.Graph.Json.DeepClone(), ["extra_data"] = p.ExtraData.DeepClone() };
        }
        return job;
    }
}
