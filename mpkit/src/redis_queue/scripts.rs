//! The queue's Lua scripts. Redis runs a script atomically (no other
//! command runs between its calls), which is what makes `maxsize` exact
//! and a reclaim that dead-letters an entry all-or-nothing.
//!
//! Put and take fail with `NOQUEUE` when the settings hash is missing:
//! the server lost the queue, and adding to a stream without its group, or
//! reading nothing from it, would hide that.
//!
//! Keys: `KEYS[1]` the stream, `KEYS[2]` the settings hash, `KEYS[3]` the
//! dead-letter stream (the producers' hash for [`PUT`]). The consumer
//! group is `ARGV[1]`.

use std::sync::LazyLock;

use redis::Script;

/// A Lua function for scripts that need the group's count of delivered,
/// unacknowledged entries: from `XINFO GROUPS`, which costs the same
/// however many consumers the group has ever had (the summary form of
/// `XPENDING` walks all of them, and every handle is a consumer).
const PENDING: &str = r#"
local function pending(stream, group)
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local name, n
        for i = 1, #g - 1, 2 do
            if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'pending' then n = g[i + 1] end
        end
        if name == group then return n end
    end
    error({err = 'NOGROUP the consumer group ' .. group .. ' of ' .. stream .. ' is gone'})
end
"#;

/// Lua functions for the consumer group, shared with the pool's scripts
/// (`redis_pool/scripts.rs`): `make_group` creates the stream and its
/// group if missing (the error text, or nil); `leave_group` deletes a
/// consumer that holds no entry (`XGROUP DELCONSUMER` would drop what it
/// holds, which must stay pending to be delivered again), 1 if it did;
/// `sweep_consumers` deletes those that hold no entry and have been idle
/// for `idle_ms` or longer (handles gone without leaving: killed, or cut
/// off; one that is not gone is made again by its next read), how many.
pub(crate) const GROUP_LUA: &str = r#"
local function make_group(stream, group)
    local made = redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
    if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
        return made.err
    end
end
local function leave_group(stream, group, consumer)
    local ok, p = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 1, consumer)
    if ok and #p == 0 then
        redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
        return 1
    end
    return 0
end
local function sweep_consumers(stream, group, idle_ms)
    local n = 0
    local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, group)
    if not ok then return 0 end
    for _, c in ipairs(consumers) do
        local name, pending, idle
        for i = 1, #c - 1, 2 do
            if c[i] == 'name' then name = c[i + 1]
            elseif c[i] == 'pending' then pending = c[i + 1]
            elseif c[i] == 'idle' then idle = c[i + 1] end
        end
        if name and pending == 0 and idle and idle >= idle_ms then
            redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
            n = n + 1
        end
    end
    return n
end
"#;

/// Creates the stream and its group if missing, records the settings the
/// first opener gives (later openers keep them), and returns the settings
/// in force: `maxsize`, `visibility_ms`, `max_deliveries`.
pub(crate) static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GROUP_LUA}{}",
        r#"
local failed = make_group(KEYS[1], ARGV[1])
if failed then return redis.error_reply(failed) end
redis.call('HSETNX', KEYS[2], 'maxsize', ARGV[2])
redis.call('HSETNX', KEYS[2], 'visibility_ms', ARGV[3])
redis.call('HSETNX', KEYS[2], 'max_deliveries', ARGV[4])
return redis.call('HMGET', KEYS[2], 'maxsize', 'visibility_ms', 'max_deliveries')
"#,
    ))
});

/// Adds the payloads `ARGV[4..]` in order, as many as `maxsize` leaves room
/// for (queued = entries in the stream less those delivered and not yet
/// acknowledged). Returns how many were added, or -1 when the queue is
/// closed.
///
/// A put is idempotent per producer: `ARGV[2]` names the handle and
/// `ARGV[3]` is its put's number; the hash `KEYS[3]` keeps each handle's
/// last put that added something as `"number added"`, and a put whose
/// number is already there (a retry after its reply was lost) adds nothing
/// and returns what the first one added.
pub(crate) static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PENDING}{}",
        r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
    return redis.error_reply('NOQUEUE the queue is gone from the server (restarted without its data, or its keys were deleted)')
end
local last = redis.call('HGET', KEYS[3], ARGV[2])
if last then
    local seq, added = string.match(last, '^(%d+) (%d+)$')
    if seq == ARGV[3] then return tonumber(added) end
end
local meta = redis.call('HMGET', KEYS[2], 'closed', 'maxsize')
if meta[1] == '1' then return -1 end
local n = #ARGV - 3
local max = tonumber(meta[2]) or 0
if max > 0 then
    local queued = redis.call('XLEN', KEYS[1]) - pending(KEYS[1], ARGV[1])
    if max - queued < n then n = max - queued end
end
if n <= 0 then return 0 end
for i = 1, n do
    redis.call('XADD', KEYS[1], '*', 'v', ARGV[i + 3])
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3] .. ' ' .. n)
return n
"#,
    ))
});

/// Takes up to `ARGV[5]` entries for consumer `ARGV[2]`: first those
/// delivered elsewhere and idle for at least `ARGV[3]` ms (`XAUTOCLAIM`,
/// which counts a delivery), moving any whose delivery count passes
/// `ARGV[4]` to the dead-letter stream instead (with fields `id` and
/// `deliveries` before its own; of an entry with over 500 fields, which
/// Lua could not pass on, only `v` and `dropped_fields`, their number); if
/// none, new entries (`XREADGROUP`, no
/// blocking). The scan for idle entries starts at `ARGV[6]`, where this
/// handle's last one stopped (`XAUTOCLAIM` looks at 10 entries per entry
/// asked for: always starting at `0-0`, busy old entries would hide idle
/// newer ones). Returns `{closed, {{id, fields, deliveries}, ...}, next
/// scan start}`.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
    return redis.error_reply('NOQUEUE the queue is gone from the server (restarted without its data, or its keys were deleted)')
end
local closed = redis.call('HGET', KEYS[2], 'closed') == '1'
local count = tonumber(ARGV[5])
local max = tonumber(ARGV[4])
local out = {}
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[6], 'COUNT', count)
for _, e in ipairs(claimed[2]) do
    local id = e[1]
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local n = 0
    if p[1] then n = p[1][4] end
    -- Redis keeps the count unsigned and reports it signed: one past
    -- 2^63 - 1 (set with XCLAIM RETRYCOUNT) reads as negative.
    if n < 0 then n = n + 18446744073709551616 end
    if n > max then
        local fields = e[2] or {}
        if #fields > 1000 then
            -- Not one of ours, and too many for unpack: keep `v`, if any.
            local keep = {'dropped_fields', math.floor(#fields / 2)}
            for i = 1, #fields - 1, 2 do
                if fields[i] == 'v' then
                    table.insert(keep, 'v')
                    table.insert(keep, fields[i + 1])
                    break
                end
            end
            fields = keep
        end
        redis.call('XADD', KEYS[3], '*', 'id', id, 'deliveries', string.format('%.0f', n), unpack(fields))
        redis.call('XACK', KEYS[1], ARGV[1], id)
        redis.call('XDEL', KEYS[1], id)
    else
        table.insert(out, {id, e[2] or {}, n})
    end
end
if #out == 0 then
    local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count, 'STREAMS', KEYS[1], '>')
    if r then
        for _, e in ipairs(r[1][2]) do
            table.insert(out, {e[1], e[2] or {}, 1})
        end
    end
end
return {closed and 1 or 0, out, claimed[1]}
"#,
    )
});

/// Acknowledges the entries `ARGV[2..]` and deletes them from the stream;
/// returns the ids of those that were not pending.
pub(crate) static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local missed = {}
for i = 2, #ARGV do
    if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
        redis.call('XDEL', KEYS[1], ARGV[i])
    else
        table.insert(missed, ARGV[i])
    end
end
return missed
"#,
    )
});

/// `{entries in the stream, of those delivered and not acknowledged}`.
pub(crate) static STATS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PENDING}{}",
        r#"
return {redis.call('XLEN', KEYS[1]), pending(KEYS[1], ARGV[1])}
"#,
    ))
});

/// A handle leaves the group: its consumer `ARGV[2]` is deleted if it
/// holds no entry (`XGROUP DELCONSUMER` would drop what it holds, which
/// must stay pending to be delivered again). Returns 1 if deleted.
pub(crate) static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GROUP_LUA}{}",
        "return leave_group(KEYS[1], ARGV[1], ARGV[2])"
    ))
});

/// Deletes the group's consumers that hold no entry and have been idle for
/// `ARGV[2]` ms (handles gone without leaving: killed, or cut off; one
/// that is not gone is made again by its next read). Returns how many.
pub(crate) static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GROUP_LUA}{}",
        "return sweep_consumers(KEYS[1], ARGV[1], tonumber(ARGV[2]))"
    ))
});
