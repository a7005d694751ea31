//! The pool's Lua scripts: every step that changes two things together is
//! one script, atomic on the server.
//!
//! Keys of pool `P` (all with the hash tag `{P}`), from the prefix
//! `mpkit:pool:{P}:` that scripts are given as an argument to name a
//! caller's keys: `tasks` (stream, group `mpkit`), `meta` (hash),
//! `workers` (sorted set), `caller:C` (string with a TTL: caller `C` is
//! alive), `results:C` (stream: caller `C`'s results).

use std::sync::LazyLock;

use redis::Script;

use crate::redis_queue::scripts::GROUP_LUA;

/// Lua helpers shared by the scripts: a field of an entry, whether a
/// caller is alive, acknowledging and deleting a task, and adding a result
/// for a caller (its stream expires some time after the caller's lease
/// would, so a caller that dies leaves nothing behind).
const HELPERS: &str = r#"
local function field(f, name)
    for i = 1, #f - 1, 2 do
        if f[i] == name then return f[i + 1] end
    end
end
local function alive(prefix, c)
    return redis.call('EXISTS', prefix .. 'caller:' .. c) == 1
end
local function finish(tasks, group, id)
    local n = redis.call('XACK', tasks, group, id)
    redis.call('XDEL', tasks, id)
    return n
end
local function result(prefix, c, fields)
    local rk = prefix .. 'results:' .. c
    redis.call('XADD', rk, '*', unpack(fields))
    local ttl = redis.call('PTTL', prefix .. 'caller:' .. c)
    if ttl < 0 then ttl = 0 end
    redis.call('PEXPIRE', rk, ttl * 2 + 1000)
end
"#;

/// The most milliseconds a visibility timeout may be (2^53: what a Lua
/// number holds exactly, and what the builder allows).
pub(super) const VISIBILITY_MAX: u64 = 1 << 53;

/// The pool's recorded visibility timeout, `visibility_ms` in `meta`, as
/// a valid one is written: the decimal digits of a number from 1 to
/// [`VISIBILITY_MAX`], no sign, no leading zero, no fraction. The Lua
/// function `visibility` ([`VISIBILITY_LUA`]) checks the same.
pub(super) fn visibility_ms(v: &[u8]) -> Option<u64> {
    let digits = v.len() <= 16 && v.first() != Some(&b'0') && v.iter().all(u8::is_ascii_digit);
    let ms: u64 = std::str::from_utf8(v)
        .ok()
        .filter(|_| digits)?
        .parse()
        .ok()?;
    (1..=VISIBILITY_MAX).contains(&ms).then_some(ms)
}

/// Why a `visibility_ms` that [`visibility_ms`] refuses is an error (the
/// Lua scripts' `BADMETA` error says the same).
pub(super) fn bad_visibility(meta: &str, v: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&v[..v.len().min(64)]);
    format!(
        "the pool setting visibility_ms in {meta} holds {shown:?}, not a whole number of milliseconds from 1 to 2^53 (another client wrote it): no worker can take a task until a caller connects (RedisPool::connect records its own) or it is set right"
    )
}

/// Lua: the pool's recorded visibility timeout. `visibility(meta)` returns
/// `'ok', ms`, `'none'` (not recorded), or `'bad', what it holds`; and
/// `bad_visibility(meta, v)` is the `BADMETA` error for the last.
pub(super) const VISIBILITY_LUA: &str = r#"
local function visibility(meta)
    local v = redis.call('HGET', meta, 'visibility_ms')
    if not v then return 'none' end
    if #v <= 16 and string.match(v, '^[1-9]%d*$') and tonumber(v) <= 9007199254740992 then
        return 'ok', tonumber(v)
    end
    return 'bad', v
end
local function bad_visibility(meta, v)
    return redis.error_reply('BADMETA the pool setting visibility_ms in ' .. meta .. ' holds ' .. string.format('%q', string.sub(v, 1, 64)) .. ', not a whole number of milliseconds from 1 to 2^53 (another client wrote it): no worker can take a task until a caller connects (RedisPool::connect records its own) or it is set right')
end
"#;

/// Opens the pool for a caller: creates the task stream and its group if
/// missing, records the visibility timeout if no valid one is (the first
/// caller's stands; one another client overwrote with something that is
/// not a number of milliseconds is replaced), and starts the caller's
/// lease. `KEYS`: tasks, meta, the caller's key. `ARGV`: group,
/// visibility ms, lease ms. Returns the visibility timeout in force.
pub(super) static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GROUP_LUA}{VISIBILITY_LUA}{}",
        r#"
local failed = make_group(KEYS[1], ARGV[1])
if failed then return redis.error_reply(failed) end
if visibility(KEYS[2]) ~= 'ok' then
    redis.call('HSET', KEYS[2], 'visibility_ms', ARGV[2])
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
return redis.call('HGET', KEYS[2], 'visibility_ms')
"#,
    ))
});

/// Opens the pool for a worker: creates the task stream and its group if
/// missing. `KEYS`: tasks. `ARGV`: group.
pub(super) static WORKER_OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GROUP_LUA}{}",
        r#"
local failed = make_group(KEYS[1], ARGV[1])
if failed then return redis.error_reply(failed) end
return 1
"#,
    ))
});

/// Adds one task (a chunk) and renews the caller's lease if it has not
/// expired (an expired one stays so: the collector sees it, and fails
/// the tasks workers may have skipped meanwhile). `KEYS`: tasks,
/// meta, the caller's key. `ARGV`: lease ms, then the entry's fields and
/// values. Fails with `NOPOOL` when the pool's settings are gone (the
/// server lost its data: a task added now would go to a stream without
/// its group), and with `BADMETA` when its visibility timeout is not a
/// number (no worker could take the task). Returns the entry's id.
pub(super) static SUBMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{VISIBILITY_LUA}{}",
        r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
    return redis.error_reply('NOPOOL the pool is gone from the server (restarted without its data, or its keys were deleted)')
end
local st, v = visibility(KEYS[2])
if st == 'bad' then return bad_visibility(KEYS[2], v) end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[1], 'XX')
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"#,
    ))
});

/// Takes up to `ARGV[3]` tasks for worker `ARGV[2]`: first those delivered
/// elsewhere and idle for the visibility timeout (`XAUTOCLAIM`, which
/// counts a delivery, scanning on from `ARGV[4]`), then new ones. A task
/// whose caller is gone is acknowledged and deleted, not returned; a
/// reclaimed task whose delivery count passes its `m` field (its retries
/// and one) is finished with a result `k = lost`, `r = deliveries so far`
/// for its caller. `KEYS`: tasks, meta. `ARGV`: group, consumer, count,
/// scan start, key prefix. Returns `{{{id, fields, deliveries}, ...}, next
/// scan start, last id of the stream, visibility ms}` (the last id, to
/// block on for newer entries when nothing was taken). Fails with
/// `BADMETA`, taking nothing, when the recorded visibility timeout is not
/// a number of milliseconds (30 s when none is recorded).
pub(super) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{VISIBILITY_LUA}{}",
        r#"
local st, vis = visibility(KEYS[2])
if st == 'bad' then return bad_visibility(KEYS[2], vis) end
if st == 'none' then vis = 30000 end
local out = {}
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], vis, ARGV[4], 'COUNT', ARGV[3])
for _, e in ipairs(claimed[2]) do
    local id, f = e[1], e[2] or {}
    local c = field(f, 'c')
    if c and not alive(ARGV[5], c) then
        finish(KEYS[1], ARGV[1], id)
    else
        local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
        local n = 0
        if p[1] then n = p[1][4] end
        local max = tonumber(field(f, 'm') or '1') or 1
        if c and n > max then
            finish(KEYS[1], ARGV[1], id)
            result(ARGV[5], c, {'b', field(f, 'b') or '', 's', field(f, 's') or '', 'k', 'lost', 'r', string.format('%.0f', n - 1)})
        else
            table.insert(out, {id, f, n})
        end
    end
end
local last = '0-0'
if #out == 0 then
    local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
    if r then
        for _, e in ipairs(r[1][2]) do
            local c = field(e[2] or {}, 'c')
            if c and not alive(ARGV[5], c) then
                finish(KEYS[1], ARGV[1], e[1])
            else
                table.insert(out, {e[1], e[2] or {}, 1})
            end
        end
    end
    if #out == 0 then
        local info = redis.call('XINFO', 'STREAM', KEYS[1])
        for i = 1, #info - 1, 2 do
            if info[i] == 'last-generated-id' then last = info[i + 1] end
        end
    end
end
return {out, claimed[1], last, vis}
"#,
    ))
});

/// Finishes a task: acknowledges and deletes it and, if that acknowledged
/// it (no other worker did first) and its caller is alive, adds the result
/// to the caller's results stream, all at once: a result exists only for
/// a task acknowledged by the same step, and never for a caller that is
/// gone. `KEYS`: tasks. `ARGV`: group, id, key prefix, caller, then the
/// result's fields and values. Returns 1 when the result was added, 0 when
/// another worker had finished the task, 2 when the caller is gone.
pub(super) static DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{}",
        r#"
if finish(KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[4] == '' or not alive(ARGV[3], ARGV[4]) then return 2 end
result(ARGV[3], ARGV[4], {unpack(ARGV, 5)})
return 1
"#,
    ))
});

/// A worker's heartbeat: its registration in `workers` (a sorted set
/// scored by when it expires, on the server's clock) is renewed, expired
/// ones are removed, and so are consumers of the group that hold nothing
/// and have been idle longer than a registration lasts (workers gone;
/// one that is not gone is made again by its next read). `KEYS`: workers,
/// tasks. `ARGV`: consumer, registration ms, group. Returns the number of
/// workers registered.
pub(super) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GROUP_LUA}{}",
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
sweep_consumers(KEYS[2], ARGV[3], ttl + 1)
return redis.call('ZCARD', KEYS[1])
"#,
    ))
});

/// A worker leaves: its registration goes, and so does its consumer if it
/// holds no task (one it holds stays pending, to be delivered again after
/// the visibility timeout). `KEYS`: workers, tasks. `ARGV`: consumer,
/// group.
pub(super) static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GROUP_LUA}{}",
        r#"
redis.call('ZREM', KEYS[1], ARGV[1])
leave_group(KEYS[2], ARGV[2], ARGV[1])
return 1
"#,
    ))
});

/// The number of workers registered now (expired ones removed first).
/// `KEYS`: workers.
pub(super) static WORKERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"#,
    )
});

/// A caller leaves: its lease and results go, and so do the tasks it
/// names that no worker finished (one a worker holds still runs; its
/// result is not written, the caller being gone). `KEYS`: tasks, the
/// caller's key, its results. `ARGV`: the task ids.
pub(super) static LEAVE_CALLER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('DEL', KEYS[2], KEYS[3])
for i = 1, #ARGV do
    redis.call('XDEL', KEYS[1], ARGV[i])
end
return 1
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::{VISIBILITY_MAX, visibility_ms};

    #[test]
    fn a_visibility_is_digits_from_1_to_2_pow_53() {
        assert_eq!(visibility_ms(b"60000"), Some(60_000));
        assert_eq!(visibility_ms(b"1"), Some(1));
        assert_eq!(visibility_ms(b"9007199254740992"), Some(VISIBILITY_MAX));
        for bad in [
            &b""[..],
            b"0",
            b"060000",
            b"+5",
            b"-5",
            b"1.5",
            b"1e3",
            b" 5",
            b"soon",
            b"9007199254740993",
            b"99999999999999999999",
            b"\xff",
        ] {
            assert_eq!(
                visibility_ms(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
