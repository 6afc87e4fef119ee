//! The Lua scripts that make every lock operation one atomic round trip.
//!
//! Each is a `redis::Script` built once and invoked by SHA (`EVALSHA`, see
//! [`run`]), loaded after a `NOSCRIPT` (e.g. a server restart). Their keys,
//! arguments and replies are typed in `protocol.rs`.
//! Lock names reach Redis only as `KEYS`/`ARGV`, never inside script text.

use std::sync::LazyLock;

/// An `EVALSHA` of `script` with `keys` keys; its keys and arguments follow as
/// `arg`s, written straight into the one command buffer (a `ScriptInvocation`
/// copies each of them twice, and lock operations are all script calls).
pub(crate) fn evalsha(script: &redis::Script, keys: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(3 + keys + 7, 160);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
    cmd
}

/// Sends `cmd` (made by [`evalsha`] for `script`); after a `NOSCRIPT` (a server
/// restarted or flushed its scripts) loads the script and sends it once more.
pub(crate) async fn run<T: redis::FromRedisValue>(
    script: &redis::Script,
    cmd: &redis::Cmd,
    connection: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<T> {
    match cmd.query_async(connection).await {
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            script.load_async(connection).await?;
            cmd.query_async(connection).await
        }
        other => other,
    }
}

/// Acquire, in either mode.
///
/// KEYS\[1\] lock key, KEYS\[2\] fence key, KEYS\[3\] wait queue, KEYS\[4\]
/// waiters; ARGV\[1\] token, ARGV\[2\] ttl in ms, ARGV\[3\] how long the fence key
/// lives in ms (`0`: no fencing token), ARGV\[4\] how long a waiter's place in the
/// queue is kept without another attempt (ms; `0`: try once, do not queue),
/// ARGV\[5\] this attempt's number (1, 2, … within one acquire), ARGV\[6\] `1` for
/// FIFO (`fair`), ARGV\[7\] the notice channel of the waiter's client.
///
/// Returns `{1, fence}` when the key now holds the token for ttl (`fence` is 0
/// without fencing): it was free (default mode: whoever asks first; FIFO: only if
/// no live waiter is queued ahead), or a release had already handed it to this
/// token, which is confirmed here and its lease restarted. Otherwise the token is
/// queued (keeping its place) with a deadline, this attempt's number and where to
/// send its notices, and the
/// result is `{0, pttl}`: the holder's remaining lease in ms, -1 if the key has no
/// expiry, -2 if the lock is free but kept for the waiter ahead (FIFO).
///
/// The fencing token is `max(last + 1, server time in µs)`: strictly increasing for a
/// name while the fence key lives, and still larger than every earlier token if the
/// fence key is evicted or expires, as long as the server clock does not go back.
pub(crate) static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{SHARED_FUNCTIONS}{}",
        r"
local token, ttl, life, place, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local taken, owner = false, false
if ARGV[6] == '1' then
  owner = redis.call('GET', KEYS[1])
  if not owner then
    local head = first_live()
    if not head or head == token then
      redis.call('SET', KEYS[1], token, 'PX', ttl)
      taken = true
    end
  end
else
  -- One call: sets the key if it is free, else returns who holds it (Redis 7.0+).
  owner = redis.call('SET', KEYS[1], token, 'NX', 'PX', ttl, 'GET')
  taken = not owner
end
if taken then
  if attempt ~= '1' then
    leave(token)
  end
  return {1, (fence(life))}
end
if owner == token then
  -- Handed to us by the previous holder's release, with the fencing token now in
  -- the fence key (nobody else can take one while the lock is ours).
  redis.call('PEXPIRE', KEYS[1], ttl)
  leave(token)
  if life == '0' then
    return {1, 0}
  end
  return {1, tonumber(redis.call('GET', KEYS[2])) or fence(life)}
end
if place ~= '0' then
  enqueue(token, place, ttl, attempt, life, ARGV[7])
end
if owner then
  return {0, redis.call('PTTL', KEYS[1])}
end
return {0, -2}
"
    ))
});

/// Extend (compare-and-`PEXPIRE`).
///
/// KEYS\[1\] lock key; ARGV\[1\] token, ARGV\[2\] new ttl in ms.
///
/// Returns 1 when the key still held the token and now expires in ttl, 0 when the
/// key is gone or holds another token (the lease is lost; nothing was touched).
pub(crate) static EXTEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Quorum mode (Redlock): one node's share of an acquire attempt. A node of a
/// quorum keeps its waiters in arrival order, and a release hands the lock to
/// the first of them ([`QUORUM_RELEASE`]); the arrival is the waiter's own
/// clock's, sent with every attempt, so that every node orders the same
/// waiters alike and hands the lock to the same one.
///
/// KEYS\[1\] lock key, KEYS\[2\] the waiters in arrival order (a sorted set:
/// token by arrival, µs), KEYS\[3\] their entries (a hash: token → `<deadline
/// µs> <ttl ms> <attempt> <notice channel>`), KEYS\[4\] fence key; ARGV\[1\]
/// token, ARGV\[2\] ttl in ms, ARGV\[3\] `1` to read the fencing state,
/// ARGV\[4\] how long a waiter stays registered without another attempt (ms;
/// `0`: try once, do not register), ARGV\[5\] the waiter's notice channel,
/// ARGV\[6\] the attempt's number, ARGV\[7\] the waiter's arrival (µs since
/// the epoch by its clock; kept within a second of the node's).
///
/// Returns `{1, '0', fence, time}` when the key was free and now holds the
/// token for ttl, `{2, …}` when it held the token already (a release handed it
/// to us, or this attempt was sent again) and now lasts ttl more; otherwise registers the waiter (keeping its first arrival;
/// a waiter stays registered, also once granted here, until its release) and
/// returns `{0, pttl, fence, time}`, with the holder's remaining lease. `fence`
/// and `time` are the fence key's value and the server time in µs when
/// ARGV\[3\] is `1`, else `'0'`: a busy node's fence counts too, for it may hold
/// the only copy of the last token. Numbers go as decimal strings (Lua's are
/// doubles).
pub(crate) static QUORUM_ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}{QUORUM_FUNCTIONS}{}",
        // The common case first, before the helpers are made (each run of a
        // script makes them anew): a free lock, no fencing.
        r"
local owner = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2], 'GET')
if not owner and ARGV[3] == '0' then
  return {1, '0', '0', '0'}
end
",
        r"
local function fencing()
  if ARGV[3] ~= '1' then
    return '0', '0'
  end
  -- As strings: Lua numbers are doubles, exact only below 2^53.
  local now = redis.call('TIME')
  return redis.call('GET', KEYS[4]) or '0', now[1] .. string.format('%06d', tonumber(now[2]))
end
if not owner or owner == ARGV[1] then
  local granted = 1
  if owner then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    granted = 2
  end
  -- A waiter granted here stays registered (with its first arrival) until it
  -- releases: without a majority it is still waiting.
  local last, now = fencing()
  return {granted, '0', last, now}
end
register(ARGV[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
local last, now = fencing()
return {0, tostring(redis.call('PTTL', KEYS[1])), last, now}
"
    ))
});

/// Quorum mode: writes a lease's fencing token back to every node that
/// answered its acquire, before the lease counts as held.
///
/// KEYS\[1\] lock key, KEYS\[2\] fence key; ARGV\[1\] token, ARGV\[2\] fencing
/// token, ARGV\[3\] how long the fence key lives in ms.
///
/// Raises the fence key to the fencing token (it is never lowered: raising it
/// on a node held by another token is harmless). Returns 1 when the key holds
/// the token (this node counts towards the majority that stores it), else 0.
pub(crate) static QUORUM_FENCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- Compared as decimal strings (Lua's doubles are exact only below 2^53).
local last, fence = redis.call('GET', KEYS[2]) or '0', ARGV[2]
if #last < #fence or (#last == #fence and last < fence) then
  redis.call('SET', KEYS[2], fence, 'PX', ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0
",
    )
});

/// Quorum mode: one node's share of an extend.
///
/// KEYS\[1\] lock key, KEYS\[2\] its release receipt (`<key>:released`);
/// ARGV\[1\] token, ARGV\[2\] ttl in ms.
///
/// Returns 1 when the key held the token and now lasts ttl more; 0 when another
/// token holds it (nothing was touched); 2 when the key was gone (the node
/// restarted empty, or the key expired) and now holds the token again, so that
/// one more lost node cannot give another client a majority. A 2 does not
/// confirm the lease (someone may have held this node meanwhile): only 1s do.
/// A key released by this token (its receipt says so) is never brought back:
/// an extend already on its way when the release was sent changes nothing.
pub(crate) static QUORUM_EXTEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if owner or redis.call('GET', KEYS[2]) == ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
",
    )
});

/// Quorum mode: one node's share of a release, or of giving back a minority
/// won by an attempt that did not reach a majority.
///
/// KEYS\[1\] lock key, KEYS\[2\] and KEYS\[3\] the waiters as for
/// [`QUORUM_ACQUIRE`], KEYS\[4\] the release receipt; ARGV\[1\] token, ARGV\[2\]
/// `release`, `force` or `rollback`; for `release`, ARGV\[3\] how long the
/// receipt lasts (ms); for `rollback`, ARGV\[3\] how long the waiter stays
/// registered (ms; `0`: do not register), ARGV\[4\] its notice channel,
/// ARGV\[5\] the attempt's number and ARGV\[6\] the waiter's arrival.
///
/// Deletes the key if it holds the token. A `release` of the key leaves a
/// receipt (KEYS\[4\] holds the token), so that an extend of the same lease
/// still in flight does not take the key again ([`QUORUM_EXTEND`]). It then
/// forgets the token as a waiter and, if the lock is free, hands it to the
/// first live waiter (dropping dead ones on the way): the key now holds that
/// waiter's token for its ttl. The node tells nobody: the releasing client,
/// which hears from every node, tells the waiter once a majority handed it the
/// lock (or wakes it when they did not agree); the entries' field `handed`
/// says to whom, after which of its attempts. A `rollback` keeps a key handed
/// to the token after the attempt it gives back arrived, hands nothing on
/// (the contenders back off and try again) and registers the token as a
/// waiter. `force` (an operator freeing a stuck lock) is a `release` that does
/// nothing unless the key holds the token, and whose receipt lasts at least as
/// long as the key would have.
///
/// Returns `{held, token, attempt, channel}`: `held` 1 when the key held the
/// token, else 0; then the waiter the lock was handed to, the number of its
/// latest attempt this node saw and its notice channel, or three empty strings.
pub(crate) static QUORUM_RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}{QUORUM_FUNCTIONS}{}",
        // The common case first, before the helpers are made: our own lock,
        // nobody waiting.
        r"
local ours = redis.call('GET', KEYS[1]) == ARGV[1]
local force = ARGV[2] == 'force'
if force then
  if not ours then
    return {0, '', '', ''}
  end
  -- Freed from under a live holder: its receipt outlasts the lease it had,
  -- so no extend of the holder's brings the key back.
  local left = redis.call('PTTL', KEYS[1])
  if left > tonumber(ARGV[3]) then
    ARGV[3] = tostring(left)
  end
  ARGV[2] = 'release'
end
local release = ARGV[2] == 'release'
local keep = false
if ours and not release then
  -- A rollback gives back what its attempt won, not a key a release handed
  -- us after that attempt arrived: the releaser tells us whether a majority
  -- did so, and the lease counts from that attempt.
  local handed = redis.call('HGET', KEYS[3], 'handed')
  if handed then
    local token, attempt = string.match(handed, '^(.*) (%d+)$')
    keep = token == ARGV[1] and tonumber(attempt) >= tonumber(ARGV[5])
  end
end
if ours and not keep then
  redis.call('DEL', KEYS[1])
  if release then
    redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[3])
  end
end
local held = 0
if ours then
  held = 1
end
if release and redis.call('EXISTS', KEYS[2]) == 0 then
  return {held, '', '', ''}
end
",
        r"
if release then
  forget(ARGV[1])
  if ours or redis.call('EXISTS', KEYS[1]) == 0 then
    local token, attempt, channel = hand_on()
    return {held, token, attempt, channel}
  end
else
  register(ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
end
return {held, '', '', ''}
"
    ))
});

/// The waiter bookkeeping the quorum scripts share (KEYS\[2\], KEYS\[3\]).
const QUORUM_FUNCTIONS: &str = r"
-- The server clock in µs (exact in a double until the year 2255).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- A waiter's place: its first arrival by its own clock, so that every node
-- orders the same waiters alike (equal times by token, as sorted sets do),
-- kept near this node's clock, so that a client whose clock is off cannot
-- jump the line by more than the slack (µs).
local SLACK = 1000000
local function register(token, place, channel, attempt, arrival)
  if place == '0' then
    return
  end
  local now = now_us()
  local at = tonumber(arrival) or now
  if at > now then
    at = now
  elseif at < now - SLACK then
    at = now - SLACK
  end
  redis.call('ZADD', KEYS[2], 'NX', string.format('%d', at), token)
  redis.call('HSET', KEYS[3], token,
    string.format('%d', now + tonumber(place) * 1000) .. ' ' .. place .. ' ' .. attempt .. ' ' .. channel)
  -- Only ever later: each entry has its own deadline, the keys outlive them all.
  for i = 2, 3 do
    if redis.call('PTTL', KEYS[i]) < tonumber(place) then
      redis.call('PEXPIRE', KEYS[i], place)
    end
  end
end
local function forget(token)
  redis.call('ZREM', KEYS[2], token)
  redis.call('HDEL', KEYS[3], token)
end
-- Gives the free lock to the first live waiter (dropping dead ones, a few
-- dozen at most per call): its token, attempt and channel, or empty strings.
local function hand_on()
  local now = now_us()
  for _ = 1, 4 do
    local heads = redis.call('ZRANGE', KEYS[2], 0, 7)
    if not heads[1] then
      break
    end
    local entries = redis.call('HMGET', KEYS[3], unpack(heads))
    for i, token in ipairs(heads) do
      local deadline, ttl, attempt, channel
      if entries[i] then
        deadline, ttl, attempt, channel = string.match(entries[i], '^(%d+) (%d+) (%d+) (.*)$')
      end
      if deadline and tonumber(deadline) >= now then
        redis.call('SET', KEYS[1], token, 'PX', ttl)
        redis.call('HSET', KEYS[3], 'handed', token .. ' ' .. attempt)
        return token, attempt, channel
      end
      forget(token)
    end
  end
  return '', '', ''
end
";

/// Release with direct handoff, or leave the wait queue; either mode.
///
/// KEYS as [`ACQUIRE`], and KEYS\[5\] the receipt key when ARGV\[3\] is not
/// `0`; ARGV\[1\] token, ARGV\[2\] the releasing client's notice channel,
/// ARGV\[3\] how long the receipt lasts in ms (`0`: none); optionally ARGV\[4\]
/// the token of the releasing client's next task in line for the lock (see
/// `line`), ARGV\[5\] its ttl in ms, ARGV\[6\] its fence key lifetime in ms
/// (`0`: no fencing token) and ARGV\[7\] `1` if that task takes the lock ahead of
/// the queue (its client's streak of such handoffs is short), else `0`. Notices go to each waiter's own client's channel, recorded with its
/// place in the queue; those for the releasing client itself are not published but
/// returned, for it to deliver in-process (a handoff between two tasks of one
/// process costs no message).
///
/// When the key holds the token and ARGV\[7\] is `1`: the key now holds ARGV\[4\]
/// (as below), whoever is queued. Otherwise, when the key holds the token: hands
/// the lock to the first live queued waiter
/// (the key now holds that waiter's token for the waiter's ttl, with a fresh
/// fencing token if it asked for one) and publishes `<token>:<attempt>:<fence>`,
/// naming the waiter and the attempt of it that the handoff answers, so it can take
/// the lease without another round trip. If the handed lease would end before
/// the place of the waiter now first in line lapses, that waiter gets
/// `<token>:<ttl>`, so it checks again when the lease ends (should the new holder
/// be dead, it never releases); a longer lease needs no message, as the waiter
/// re-checks before its place lapses and then wakes when the holder's remaining
/// lease ends. Returns `{2, local notices}`. When no live waiter is queued: with
/// ARGV\[4\], the key now holds that token for its ttl (with a fresh fencing
/// token if asked) and the result is `{3, {fence}}` (`3` without fencing);
/// else the key is deleted and the result is `1`.
///
/// Each of these leaves the receipt, if asked: KEYS\[5\] holds the token for
/// ARGV\[3\] ms. When the key does not hold the token but the receipt does, this
/// release ran before (a cluster connection sent it again): the result is `1`,
/// and nothing is touched.
///
/// ARGV\[3\] `-1` forces the release (an operator freeing a stuck lock, with
/// 4 keys): no receipt, and when the key does not hold the token the result
/// is `0` with nothing touched (a waiter's token keeps its place).
///
/// Otherwise (the token is a waiter giving up, or a lease already lost) the token
/// leaves the queue and no lock is touched; if the lock is free, the next waiter
/// is woken (`<token>` alone) to try for it. The result is then
/// `{0, local notices}`.
///
/// A result with no local notices is the bare code (`2`, `0`): a table reply
/// costs the server more than the rest of a plain release. The plain release
/// (the key holds the token, nobody queued, no next task) runs first, before the
/// shared helpers are made.
///
/// Notices are sent with `pcall`: a user whose ACL denies the channel still
/// releases (waiters then poll).
pub(crate) static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}{SHARED_FUNCTIONS}{}",
        r"
-- The common case first, before the helpers are made (each run of a script
-- makes them anew): the key holds the token, nobody is queued, and no task of
-- this client waits to take it.
local owner = redis.call('GET', KEYS[1])
local queued
if owner == ARGV[1] and ARGV[7] ~= '1' then
  -- The first two waiters, if any (read once: the handoff below uses them).
  queued = redis.call('ZRANGE', KEYS[3], 0, 1)
  if not queued[1] and not ARGV[4] then
    redis.call('DEL', KEYS[1])
    if ARGV[3] ~= '0' and ARGV[3] ~= '-1' then
      redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[3])
    end
    return 1
  end
end
",
        r"
local own = {}
local function notify(channel, payload)
  if channel == ARGV[2] then
    table.insert(own, payload)
  else
    redis.pcall('PUBLISH', channel, payload)
  end
end
-- A bare code when there are no notices to hand back (a table reply costs the
-- server more).
local function reply(code)
  if own[1] then
    return {code, own}
  end
  return code
end
local function receipt()
  if ARGV[3] ~= '0' and ARGV[3] ~= '-1' then
    redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[3])
  end
end
if owner ~= ARGV[1] then
  if ARGV[3] == '-1' then
    -- Forced (an operator freeing a stuck lock): not the holder, nothing done.
    return 0
  end
  if ARGV[3] ~= '0' and redis.call('GET', KEYS[5]) == ARGV[1] then
    -- This release ran before, and its answer was lost.
    return 1
  end
  leave(ARGV[1])
  if not owner then
    local next, _, _, _, channel = first_live()
    if next then
      notify(channel, next)
    end
  end
  return reply(0)
end
local function take_for_next_task()
  -- The releasing client's next task takes it, answered in the reply (it waits
  -- in process, not in the queue).
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  receipt()
  local _, fenced = fence(ARGV[6])
  if fenced == '0' then
    return 3
  end
  return {3, {fenced}}
end
if ARGV[7] == '1' then
  return take_for_next_task()
end
local next, ttl, attempt, life, channel
local entries = {}
if queued[1] then
  entries = redis.call('HMGET', KEYS[4], unpack(queued))
  ttl, attempt, life, channel = live(entries[1])
  if ttl then
    next = queued[1]
  else
    -- A dead head: drop the dead in turn (rare, so one waiter at a time).
    next, ttl, attempt, life, channel = first_live()
    queued[2] = nil
  end
end
if next then
  leave(next)
  redis.call('SET', KEYS[1], next, 'PX', ttl)
  receipt()
  local _, fenced = fence(life)
  notify(channel, next .. ':' .. attempt .. ':' .. fenced)
  -- The waiter now first in line re-checks before its place lapses; if the
  -- handed lease ends sooner, say when to check (its holder may be dead).
  local heir, heir_channel, heir_deadline = queued[2]
  if heir then
    _, _, _, heir_channel, heir_deadline = live(entries[2])
    if not heir_deadline then
      heir = nil
    end
  end
  if not heir then
    heir, _, _, _, heir_channel, heir_deadline = first_live()
  end
  if heir and now_ms() + tonumber(ttl) < heir_deadline then
    notify(heir_channel, heir .. ':' .. ttl)
  end
  return reply(2)
end
if ARGV[4] then
  return take_for_next_task()
end
redis.call('DEL', KEYS[1])
receipt()
return 1
"
    ))
});

/// The helpers shared by the scripts (prepended to their text). KEYS\[2\] the fence
/// key, KEYS\[3\] the wait queue (a sorted set of waiting tokens by arrival),
/// KEYS\[4\] the waiters' hash: token -> `<deadline ms>:<ttl ms>:<attempt>:<fence
/// key lifetime ms or 0>:<notice channel>` (deadline in server time).
const SHARED_FUNCTIONS: &str = r"
-- Server time, read once per script run: seconds and µs as TIME gives them.
local clock, seconds, micros
local function now_us()
  if not clock then
    local now = redis.call('TIME')
    seconds, micros = now[1], now[2]
    clock = tonumber(seconds) * 1000000 + tonumber(micros)
  end
  return clock
end
local function now_ms()
  return math.floor(now_us() / 1000)
end
-- A new fencing token, kept in the fence key for `life` ms ('0': none, 0), as a
-- number and as the text stored.
local function fence(life)
  if life == '0' then
    return 0, '0'
  end
  local floor = now_us()
  local token = (tonumber(redis.call('GET', KEYS[2])) or 0) + 1
  if token < floor then
    token = floor
  end
  local text = string.format('%.0f', token)
  redis.call('SET', KEYS[2], text, 'PX', life)
  return token, text
end
local function leave(token)
  redis.call('ZREM', KEYS[3], token)
  redis.call('HDEL', KEYS[4], token)
end
-- Queues the token with a deadline of now + place, keeping its place if queued
-- (arrival order is server time in µs: exact in a double, and no two scripts run
-- in the same µs; were the clock set back, only the order of arrivals around
-- that moment would suffer). Built from TIME's text and by concatenation, with
-- no number formatting: the deadline in ms has 13 digits, which Lua's `..`
-- (14 significant digits) writes exactly.
local function enqueue(token, place, ttl, attempt, life, channel)
  local deadline = now_ms() + tonumber(place)
  redis.call('ZADD', KEYS[3], 'NX', seconds .. string.sub('00000' .. micros, -6), token)
  redis.call('HSET', KEYS[4], token,
    deadline .. ':' .. ttl .. ':' .. attempt .. ':' .. life .. ':' .. channel)
  -- The queue outlives every deadline in it (a short-lived waiter never cuts it
  -- short for the others), then vanishes if nobody waits. Extended only when it
  -- would end within 1.5 places (to 2), so most calls just read its ttl.
  local span = tonumber(place)
  for i = 3, 4 do
    if redis.call('PTTL', KEYS[i]) < span * 1.5 then
      redis.call('PEXPIRE', KEYS[i], span * 2)
    end
  end
end
-- A waiter's entry if its deadline has not passed: its ttl, latest attempt,
-- fence key lifetime, notice channel and deadline; nothing if gone or lapsed.
local function live(entry)
  if not entry then
    return
  end
  local deadline, ttl, attempt, life, channel =
    string.match(entry, '^(%d+):(%d+):(%d+):(%d+):(.+)$')
  deadline = tonumber(deadline)
  if deadline and deadline >= now_ms() then
    return ttl, attempt, life, channel, deadline
  end
end
-- The first waiter whose deadline has not passed (dropping the dead): its token,
-- ttl, latest attempt, fence key lifetime, notice channel and deadline.
local function first_live()
  while true do
    local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not head then
      return nil
    end
    local ttl, attempt, life, channel, deadline = live(redis.call('HGET', KEYS[4], head))
    if ttl then
      return head, ttl, attempt, life, channel, deadline
    end
    leave(head)
  end
end
";

/// Take several exclusive locks together, all or none.
///
/// KEYS: the lock keys (one server, or one cluster slot); ARGV\[1..n\] their
/// tokens, ARGV\[n+1\] the ttl in ms. Sets every key to its token if none of
/// them exists (what a plain `SET NX PX` of each would do, atomically); returns
/// 1 if it did, 0 (nothing set) if one is held.
pub(crate) static TAKE_TOGETHER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = #KEYS
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 0
  end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[n + 1])
end
return 1
",
    )
});

/// Extend several exclusive locks together (a set taken by [`TAKE_TOGETHER`]).
///
/// KEYS: the lock keys; ARGV\[1..n\] their tokens, ARGV\[n+1\] the ttl in
/// ms. Compare-and-`PEXPIRE` of each, as [`EXTEND`]; returns for each lock 1
/// if it held its token and now lasts ttl more, else 0 (untouched).
pub(crate) static EXTEND_TOGETHER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = #KEYS
local done = {}
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    done[i] = redis.call('PEXPIRE', KEYS[i], ARGV[n + 1])
  else
    done[i] = 0
  end
end
return done
",
    )
});

/// Release several exclusive locks together where nobody waits for them.
///
/// KEYS: for each lock, its key and its queue (`:queue`); ARGV: their tokens.
/// Deletes each key that holds its token and has nobody queued (what the
/// release script's first lines do); returns for each lock 1 if deleted, 0
/// if left untouched (not ours, or waiters to hand it to: it takes a release
/// of its own).
pub(crate) static RELEASE_TOGETHER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local done = {}
for i = 1, #ARGV do
  local key, queue = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('GET', key) == ARGV[i] and redis.call('EXISTS', queue) == 0 then
    redis.call('DEL', key)
    done[i] = 1
  else
    done[i] = 0
  end
end
return done
",
    )
});

/// What the scripts of locks with many holders (semaphores, read/write) share.
///
/// KEYS\[1\] the holders: a sorted set of tokens scored by when each lease
/// ends (server time in ms), so an expired holder is dropped by score; the
/// key itself lives at least as long as its longest lease. KEYS\[2\] waiters
/// by arrival (µs), KEYS\[3\] each waiter's entry, `<deadline ms> <channel>`.
/// A token's first letter is its shape (`s` semaphore, `r` reader, `w`
/// writer), and a semaphore token carries its permits (`s<n>-…`).
const MANY_FUNCTIONS: &str = r"
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function permits(token)
  return tonumber(string.match(token, '^s(%d+)%-')) or 1
end
-- The key outlives a lease of `ms` from now (raised only: a key with no
-- expiry, however it came to be, gets one).
local function outlive(ms)
  if redis.call('PTTL', KEYS[1]) < ms then
    redis.call('PEXPIRE', KEYS[1], ms)
  end
end
local function leave(token)
  if redis.call('ZREM', KEYS[2], token) == 1 then
    redis.call('HDEL', KEYS[3], token)
  end
end
-- The live waiters in arrival order (the first 1000), dropping lapsed ones.
local function live_waiters(now)
  local live = {}
  local queued = redis.call('ZRANGE', KEYS[2], 0, 999)
  if #queued == 0 then
    return live
  end
  local entries = redis.call('HMGET', KEYS[3], unpack(queued))
  for i, waiter in ipairs(queued) do
    local deadline = entries[i] and tonumber(string.match(entries[i], '^(%d+)'))
    if deadline and deadline > now then
      live[#live + 1] = waiter
    else
      leave(waiter)
    end
  end
  return live
end
-- What a holder's token says it holds: `a semaphore of <n>` or `a read/write lock`.
local function shape(token)
  if string.sub(token, 1, 1) == 's' then
    return 'a semaphore of ' .. permits(token)
  end
  return 'a read/write lock'
end
local function writer_holds()
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  return first ~= nil and string.sub(first, 1, 1) == 'w'
end
";

/// Acquire a lock with many holders: a semaphore's permit, a read or a write
/// share (see [`MANY_FUNCTIONS`] for the keys).
///
/// ARGV\[1\] token (its shape in its first letter), ARGV\[2\] ttl in ms,
/// ARGV\[3\] how long a waiter's place is kept without another attempt (ms;
/// `0`: try once, do not queue), ARGV\[4\] `1` for arrival order (semaphores),
/// ARGV\[5\] the notice channel of the waiter's client.
///
/// A semaphore token may hold while fewer than its permits hold (with arrival
/// order: and fewer live waiters are ahead of it than permits are free); a
/// reader while no writer holds and no writer waits ahead of it; a writer
/// while nobody holds and no writer waits ahead of it. A token already
/// holding (an answer lost) is confirmed and its lease restarted.
///
/// Returns `{1, 0}` when the token now holds for ttl; else `{0, ms}`: when
/// the first holder's lease ends (`-2`: nobody holds; waiters ahead go
/// first), the token queued if it waits. An error `LOCKSHAPE held as …`,
/// nothing changed, when the lock is held as another shape (an exclusive
/// lock, a semaphore of another size, read/write against a semaphore).
pub(crate) static MANY_ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{MANY_FUNCTIONS}{}",
        r"
local token, ttl, place, fair, channel = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local now = clock()
if type(redis.pcall('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)) == 'table' then
  return redis.error_reply('LOCKSHAPE held as an exclusive lock')
end
local kind = string.sub(token, 1, 1)
local ahead, writer_ahead, queued = 0, false, false
for _, waiter in ipairs(live_waiters(now)) do
  if waiter == token then
    queued = true
    break
  end
  ahead = ahead + 1
  if string.sub(waiter, 1, 1) == 'w' then
    writer_ahead = true
  end
end
local holders = redis.call('ZCARD', KEYS[1])
local first = holders > 0 and redis.call('ZRANGE', KEYS[1], 0, 0)[1]
local may
if holders > 0 and redis.call('ZSCORE', KEYS[1], token) then
  may = true
elseif first and shape(first) ~= shape(token) then
  -- Held as another shape (a semaphore of another size, or read/write
  -- against a semaphore): counting both in one set would break both.
  return redis.error_reply('LOCKSHAPE held as ' .. shape(first))
elseif kind == 's' then
  local free = permits(token) - holders
  may = free > 0 and (fair ~= '1' or ahead < free)
elseif kind == 'r' then
  may = not writer_ahead and (not first or string.sub(first, 1, 1) ~= 'w')
else
  may = holders == 0 and not writer_ahead
end
if may then
  redis.call('ZADD', KEYS[1], now + ttl, token)
  if holders == 0 then
    -- The key was just made (dropping the last expired holder deletes it).
    redis.call('PEXPIRE', KEYS[1], ttl)
  else
    outlive(ttl)
  end
  if queued then
    leave(token)
  end
  return {1, 0}
end
if place > 0 then
  if not queued then
    -- Arrival in µs, as a string: a Lua number would print rounded.
    local t = redis.call('TIME')
    redis.call('ZADD', KEYS[2], 'NX', t[1] .. string.format('%06d', tonumber(t[2])), token)
  end
  redis.call('HSET', KEYS[3], token, (now + place) .. ' ' .. channel)
  for i = 2, 3 do
    if redis.call('PTTL', KEYS[i]) < place then
      redis.call('PEXPIRE', KEYS[i], place)
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then
  return {0, tonumber(first[2]) - now}
end
return {0, -2}
"
    ))
});

/// Extend a lease of a lock with many holders.
///
/// ARGV\[1\] token, ARGV\[2\] new ttl in ms. Returns 1 when the token still
/// held (its lease not yet ended) and now holds for ttl more, else 0.
pub(crate) static MANY_EXTEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{MANY_FUNCTIONS}{}",
        r"
local now = clock()
local ends = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if ends and ends > now then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  outlive(tonumber(ARGV[2]))
  return 1
end
return 0
"
    ))
});

/// Release a lease of a lock with many holders (or leave its queue), and wake
/// the waiters that may go now, in arrival order: for a semaphore as many as
/// permits are free; readers up to the first waiting writer while no writer
/// holds; a writer when nobody holds. A wake-up is `PUBLISH <channel>
/// <token>`, at most 100 per release.
///
/// ARGV\[1\] token; ARGV\[2\] `force` to do nothing unless the token holds
/// (an operator freeing a stuck lock: a waiter keeps its place). Returns 1
/// when the token held, else 0.
pub(crate) static MANY_RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{MANY_FUNCTIONS}{}",
        r"
local token = ARGV[1]
if ARGV[2] == 'force' and not redis.call('ZSCORE', KEYS[1], token) then
  return 0
end
local released = redis.call('ZREM', KEYS[1], token)
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- Nobody waits: nothing to leave, nobody to wake.
  return released
end
leave(token)
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local holders = redis.call('ZCARD', KEYS[1])
local woken = 0
for _, waiter in ipairs(live_waiters(now)) do
  local kind = string.sub(waiter, 1, 1)
  if kind == 's' then
    if permits(waiter) - holders - woken <= 0 then
      break
    end
  elseif kind == 'w' then
    if holders > 0 or woken > 0 then
      break
    end
  elseif holders > 0 and writer_holds() then
    break
  end
  local entry = redis.call('HGET', KEYS[3], waiter)
  local channel = entry and string.match(entry, ' (.+)$')
  if channel then
    redis.pcall('PUBLISH', channel, waiter)
  end
  woken = woken + 1
  if kind == 'w' or woken >= 100 then
    break
  end
end
return released
"
    ))
});

/// Read one lock's state, for people and dashboards (changes nothing).
///
/// KEYS\[1\] lock key, KEYS\[2\] fence key, KEYS\[3\] wait queue and KEYS\[4\]
/// waiters of an exclusive lock (as [`ACQUIRE`]), KEYS\[5\] waiters of a lock
/// with many holders (as [`MANY_ACQUIRE`]), KEYS\[6\] waiters of a quorum node
/// (as [`QUORUM_ACQUIRE`]), KEYS\[7\] the entries of either of the last two.
///
/// Returns `{type, now, holders, fence, queue, wait, wake}`: the lock key's
/// type (`string` exclusive, `zset` many holders, `none` free), the server
/// time in ms, the holders as `token, ttl ms` pairs (ttl `-1`: no expiry), the
/// fence key's value (`''` if none), and each waiter list as `token, entry`
/// pairs in arrival order (at most 100 each; the entry holds its deadline).
pub(crate) static INSPECT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind = redis.call('TYPE', KEYS[1])['ok']
local holders = {}
if kind == 'string' then
  holders = {redis.call('GET', KEYS[1]), tostring(redis.call('PTTL', KEYS[1]))}
elseif kind == 'zset' then
  local held = redis.call('ZRANGE', KEYS[1], '(' .. now, '+inf', 'BYSCORE', 'LIMIT', 0, 1000, 'WITHSCORES')
  for i = 1, #held, 2 do
    holders[#holders + 1] = held[i]
    holders[#holders + 1] = string.format('%.0f', tonumber(held[i + 1]) - now)
  end
end
local function queued(zset, hash)
  local tokens = redis.call('ZRANGE', zset, 0, 99)
  local out = {}
  if #tokens == 0 then
    return out
  end
  local entries = redis.call('HMGET', hash, unpack(tokens))
  for i, token in ipairs(tokens) do
    out[#out + 1] = token
    out[#out + 1] = entries[i] or ''
  end
  return out
end
return {kind, string.format('%.0f', now), holders, redis.call('GET', KEYS[2]) or '',
  queued(KEYS[3], KEYS[4]), queued(KEYS[5], KEYS[7]), queued(KEYS[6], KEYS[7])}
",
    )
});
