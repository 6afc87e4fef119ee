//! The Lua scripts that make every lock operation one atomic round trip.
//!
//! Each is a `redis::Script` built once and invoked by SHA (`EVALSHA`), with the
//! redis crate's fallback to loading it after a `NOSCRIPT` (e.g. a server restart).
//! Lock names reach Redis only as `KEYS`/`ARGV`, never inside script text.

use std::sync::LazyLock;

/// Acquire.
///
/// KEYS\[1\] lock key, KEYS\[2\] fence key; ARGV\[1\] token, ARGV\[2\] ttl in ms,
/// ARGV\[3\] `"1"` to hand out a fencing token, ARGV\[4\] how long the fence key lives (ms).
///
/// Returns `{1, fence}` when the key was free and now holds the token for ttl
/// (`fence` is 0 without fencing), or `{0, pttl}` when someone else holds it
/// (`pttl` is the holder's remaining lease in ms, or -1 if the key has no expiry).
///
/// The fencing token is `max(last + 1, server time in µs)`: strictly increasing for a
/// name while the fence key lives, and still larger than every earlier token if the
/// fence key is evicted or expires, as long as the server clock does not go back.
pub(crate) static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
if ARGV[3] ~= '1' then
  return {1, 0}
end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local token = (tonumber(redis.call('GET', KEYS[2])) or 0) + 1
if token < floor then
  token = floor
end
redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[4])
return {1, token}
",
    )
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

/// Release (compare-and-`DEL`, then a release notice).
///
/// KEYS\[1\] lock key; ARGV\[1\] token, ARGV\[2\] notice channel.
///
/// Returns 1 when the key held the token and was deleted (and a notice was published
/// so waiters retry at once), 0 when the key is gone or holds another token (nothing
/// was touched: someone else's lock is never deleted). The notice is sent with
/// `pcall`: a user whose ACL denies the channel still releases (waiters then poll).
pub(crate) static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', ARGV[2], '')
  return 1
end
return 0
",
    )
});
