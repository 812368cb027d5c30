namespace LoraCraft.Redis;

/// <summary>
/// The Lua scripts that make each queue step atomic on the Redis server (a script runs alone), so
/// two workers never take one job and a job is completed once.
/// </summary>
static class RedisScripts
{
    /// <summary>KEYS: stream, queues, where. ARGV: group, id, job JSON, model, LoRA set. Returns the entry id.</summary>
    public const string Enqueue = """
        redis.call('SADD', KEYS[2], KEYS[1])
        pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
        local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'job', ARGV[3], 'model', ARGV[4], 'loras', ARGV[5])
        redis.call('HSET', KEYS[3], ARGV[2], KEYS[1] .. ' ' .. entry)
        return entry
        """;

    /// <summary>KEYS: where, control. ARGV: group, id. 1 when the job was still waiting and is now gone.</summary>
    public const string Withdraw = """
        local loc = redis.call('HGET', KEYS[1], ARGV[2])
        if not loc then return 0 end
        local sp = string.find(loc, ' ', 1, true)
        local stream, entry = string.sub(loc, 1, sp - 1), string.sub(loc, sp + 1)
        local p = redis.call('XPENDING', stream, ARGV[1], entry, entry, 1)
        if #p > 0 then return 0 end
        local n = redis.call('XDEL', stream, entry)
        redis.call('HDEL', KEYS[1], ARGV[2])
        redis.call('HSET', KEYS[2], 'cancel', 1)
        redis.call('EXPIRE', KEYS[2], 86400)
        return n
        """;

    /// <summary>
    /// KEYS: the job streams. ARGV: group, consumer, min idle ms. Takes over one job whose worker
    /// stopped answering (no heartbeat for min idle): {stream, entry id, fields, times delivered}.
    /// </summary>
    public const string Reclaim = """
        for _, key in ipairs(KEYS) do
          local ok, r = pcall(redis.call, 'XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', 1)
          if ok and r[2] and #r[2] > 0 and r[2][1][2] then
            local e = r[2][1]
            local p = redis.call('XPENDING', key, ARGV[1], e[1], e[1], 1)
            return {key, e[1], e[2], p[1][4]}
          end
        end
        return nil
        """;

    /// <summary>
    /// KEYS: the job streams. ARGV: group, consumer, the stream matching what this worker has loaded,
    /// the prefix of its checkpoint's streams, the longest wait in ms. Finds the oldest waiting job of
    /// each stream and takes one: the oldest of all when it has waited longer than the bound, else
    /// the oldest of the same checkpoint and LoRA set, else of the same checkpoint, else the oldest.
    /// Returns {stream, entry id, fields, 1}.
    /// </summary>
    public const string Take = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local tierKey, tierMs = {}, {}
        local oldestKey, oldestMs = nil, nil
        for _, key in ipairs(KEYS) do
          local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', key)
          if ok then
            local last = nil
            for _, g in ipairs(groups) do
              local name, lastId = nil, nil
              for j = 1, #g, 2 do
                if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then lastId = g[j + 1] end
              end
              if name == ARGV[1] then last = lastId end
            end
            if last then
              local first = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
              if #first > 0 then
                local ms = tonumber(string.match(first[1][1], '^(%d+)'))
                local tier = 3
                if key == ARGV[3] then tier = 1 elseif ARGV[4] ~= '' and string.sub(key, 1, #ARGV[4]) == ARGV[4] then tier = 2 end
                if tierMs[tier] == nil or ms < tierMs[tier] then tierMs[tier] = ms; tierKey[tier] = key end
                if oldestMs == nil or ms < oldestMs then oldestMs = ms; oldestKey = key end
              end
            end
          end
        end
        if oldestKey == nil then return nil end
        local chosen = oldestKey
        if now - oldestMs < tonumber(ARGV[5]) then
          for tier = 1, 3 do
            if tierKey[tier] then chosen = tierKey[tier]; break end
          end
        end
        local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', chosen, '>')
        if not got then return nil end
        local e = got[1][2][1]
        return {chosen, e[1], e[2], 1}
        """;

    /// <summary>KEYS: stream. ARGV: group, consumer, entry. Keeps the job this worker's (1), or 0 when another worker took it over.</summary>
    public const string Heartbeat = """
        local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
        if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
        return 1
        """;

    /// <summary>
    /// KEYS: done, result, events, stream, where. ARGV: group, entry, id, worker, type, data, TTL s,
    /// events kept, output JSON. The first end of a job is recorded and announced; any later one
    /// (a worker that was thought dead) only acknowledges. 1 when this was the first.
    /// </summary>
    public const string Finish = """
        local first = redis.call('SET', KEYS[1], ARGV[4], 'NX', 'EX', ARGV[7])
        if first then
          if ARGV[5] == 'completed' then redis.call('SET', KEYS[2], ARGV[9], 'EX', ARGV[7]) end
          redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[3], 'worker', ARGV[4], 'type', ARGV[5], 'data', ARGV[6])
        end
        redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
        redis.call('XDEL', KEYS[4], ARGV[2])
        redis.call('HDEL', KEYS[5], ARGV[3])
        if first then return 1 end
        return 0
        """;
}
