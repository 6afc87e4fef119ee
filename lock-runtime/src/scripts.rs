//! The Lua scripts that make every lock operation one atomic round trip.
//!
//! Each is a `redis::Script` built once and invoked by SHA (`EVALSHA`), with the
//! redis crate's fallback to loading it after a `NOSCRIPT` (e.g. a server restart).
//! Lock names reach Redis only as `KEYS`/`ARGV`, never inside script text.

use std::sync::LazyLock;

/// Acquire.
///
/// KEYS\[1\] lock key, KEYS\[2\] fence key, KEYS\[3\] wake-up queue, KEYS\[4\]
/// waiters' deadlines; ARGV\[1\] token, ARGV\[2\] ttl in ms, ARGV\[3\] `"1"` to hand
/// out a fencing token, ARGV\[4\] how long the fence key lives (ms), ARGV\[5\] how
/// long a waiter's place in the wake-up queue is kept (ms; `0`: do not queue),
/// ARGV\[6\] `"1"` if this token was queued by an earlier attempt.
///
/// Returns `{1, fence}` when the key was free and now holds the token for ttl
/// (`fence` is 0 without fencing), or `{0, pttl}` when someone else holds it
/// (`pttl` is the holder's remaining lease in ms, or -1 if the key has no expiry),
/// after queueing the token for a wake-up (see [`RELEASE`]). The queue only orders
/// wake-ups: whoever asks first when the key is free takes it.
///
/// The fencing token is `max(last + 1, server time in µs)`: strictly increasing for a
/// name while the fence key lives, and still larger than every earlier token if the
/// fence key is evicted or expires, as long as the server clock does not go back.
pub(crate) static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{FENCE_FUNCTION}{QUEUE_FUNCTIONS}{}",
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[6] == '1' then
    leave(ARGV[1])
  end
  return {1, fence()}
end
if ARGV[5] ~= '0' then
  enqueue(ARGV[1], now_ms(), ARGV[5], ARGV[2])
end
return {0, redis.call('PTTL', KEYS[1])}
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

/// Release (compare-and-`DEL`, then a release notice), or leave the wake-up queue.
///
/// KEYS\[1\] lock key, KEYS\[3\] wake-up queue, KEYS\[4\] waiters (KEYS\[2\]
/// unused); ARGV\[1\] token, ARGV\[2\] notice channel.
///
/// Takes the token out of the queue. Returns 1 when the key held the token and was
/// deleted: the notice then names the first live queued waiter, so one waiter
/// retries instead of all of them (an empty notice, waking any waiter, when nobody
/// is queued); 0 when the key is gone or holds another token (no lock was touched:
/// someone else's lock is never deleted). A waiter leaving while the lock is free
/// passes the wake-up on to the next one. The notice is sent with `pcall`: a user
/// whose ACL denies the channel still releases (waiters then poll).
pub(crate) static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{QUEUE_FUNCTIONS}{}",
        r"
leave(ARGV[1])
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('DEL', KEYS[1])
elseif owner then
  return 0
end
-- Released, or left while the lock is free (perhaps after being woken for it):
-- wake the next waiter.
local next = first_live(now_ms())
if next or owner then
  redis.pcall('PUBLISH', ARGV[2], next or '')
end
if owner then
  return 1
end
return 0
"
    ))
});

/// The fencing-token part shared by the acquire scripts (prepended to their text).
/// KEYS\[2\] fence key; ARGV\[3\] `"1"` for fencing, ARGV\[4\] fence key lifetime (ms).
const FENCE_FUNCTION: &str = r"
local function fence()
  if ARGV[3] ~= '1' then
    return 0
  end
  local now = redis.call('TIME')
  local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local token = (tonumber(redis.call('GET', KEYS[2])) or 0) + 1
  if token < floor then
    token = floor
  end
  redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[4])
  return token
end
";

/// The FIFO queue helpers shared by the fair scripts. KEYS\[3\] the queue (a sorted
/// set of waiting tokens by arrival), KEYS\[4\] the waiters' hash: token ->
/// `"<deadline ms>:<ttl ms>"` (server time), and `#seq`, the arrival counter.
const QUEUE_FUNCTIONS: &str = r"
local function now_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local function leave(token)
  redis.call('ZREM', KEYS[3], token)
  redis.call('HDEL', KEYS[4], token)
end
-- Queues the token (keeping its place if queued) with a deadline of now + place.
local function enqueue(token, now, place, ttl)
  if not redis.call('ZSCORE', KEYS[3], token) then
    redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[4], '#seq', 1), token)
  end
  redis.call('HSET', KEYS[4], token, string.format('%.0f:%s', now + tonumber(place), ttl))
  -- The queue outlives every deadline in it, then vanishes if nobody waits.
  redis.call('PEXPIRE', KEYS[3], tonumber(place) * 2)
  redis.call('PEXPIRE', KEYS[4], tonumber(place) * 2)
end
-- The first waiter whose deadline has not passed (dropping the dead), and its ttl.
local function first_live(now)
  while true do
    local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not head then
      return nil, nil
    end
    local entry = redis.call('HGET', KEYS[4], head)
    local deadline, ttl = nil, nil
    if entry then
      deadline, ttl = string.match(entry, '^(%d+):(%d+)$')
    end
    if deadline and tonumber(deadline) >= now then
      return head, ttl
    end
    leave(head)
  end
end
";

/// Acquire in FIFO order (`fair`).
///
/// KEYS\[1\] lock key, KEYS\[2\] fence key, KEYS\[3\] queue, KEYS\[4\] waiters;
/// ARGV\[1\] token, ARGV\[2\] ttl ms, ARGV\[3\] fencing, ARGV\[4\] fence lifetime ms,
/// ARGV\[5\] how long this waiter's place is kept without another call (ms; `0`:
/// try once, do not queue).
///
/// Returns `{1, fence}` when the lock is now held by the token: either it was
/// handed to the token by the previous holder's release (confirmed here, and the
/// lease restarted at ttl), or it was free with nobody live queued ahead. Otherwise
/// the token is queued (kept in place if already queued) with a fresh deadline, and
/// the result is `{0, pttl}` (`-2` when the lock is free but reserved for the
/// waiter ahead).
pub(crate) static ACQUIRE_FAIR: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{FENCE_FUNCTION}{QUEUE_FUNCTIONS}{}",
        r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  leave(ARGV[1])
  return {1, fence()}
end
local now = now_ms()
local head = first_live(now)
if not owner and (not head or head == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  leave(ARGV[1])
  return {1, fence()}
end
if ARGV[5] == '0' then
  if owner then
    return {0, redis.call('PTTL', KEYS[1])}
  end
  return {0, -2}
end
enqueue(ARGV[1], now, ARGV[5], ARGV[2])
if owner then
  return {0, redis.call('PTTL', KEYS[1])}
end
return {0, -2}
"
    ))
});

/// Release in FIFO order, or leave the queue (`fair`).
///
/// KEYS\[1\] lock key, KEYS\[3\] queue, KEYS\[4\] waiters (KEYS\[2\] unused);
/// ARGV\[1\] token, ARGV\[2\] notice channel.
///
/// Takes the token out of the queue. If the token holds the lock, hands the lock
/// directly to the first live waiter (the key now holds that waiter's token for its
/// ttl, and a notice naming it wakes it to confirm), or deletes it when nobody
/// waits; returns 1. Returns 0, touching no lock, when the token does not hold it.
pub(crate) static RELEASE_FAIR: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{QUEUE_FUNCTIONS}{}",
        r"
leave(ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local next, ttl = first_live(now_ms())
if next then
  leave(next)
  redis.call('SET', KEYS[1], next, 'PX', ttl)
  redis.pcall('PUBLISH', ARGV[2], next)
else
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', ARGV[2], '')
end
return 1
"
    ))
});
