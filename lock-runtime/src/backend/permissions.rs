//! The check at connect that the Redis user may do everything a lock needs:
//! a user allowed the plain `SET NX` that takes a free lock but not a command
//! of the release script would take locks it cannot release (each then stays
//! held until its ttl). One round trip per primary: `SCRIPT LOAD` of the
//! probe, then the probe, which asks Redis (`redis.acl_check_cmd`, Redis 7)
//! whether the user may run each command the scripts and the client use, on
//! keys and a channel of the prefix. It runs nothing and writes nothing.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;

use super::scripts;
use crate::error::LockError;

/// Every command the lock scripts run, with the arguments the probe checks
/// it with: `K1`, `K2`, `K3` stand for a string, a sorted set and a hash key of
/// the prefix, `CH` for a channel of the prefix.
const SCRIPT_COMMANDS: &[(&str, &[&str])] = &[
    ("TIME", &[]),
    ("SET", &["K1", "probe", "NX", "PX", "1000", "GET"]),
    ("GET", &["K1"]),
    ("EXISTS", &["K1"]),
    ("TYPE", &["K1"]),
    ("PEXPIRE", &["K1", "1000"]),
    ("PTTL", &["K1"]),
    ("DEL", &["K1"]),
    ("ZADD", &["K2", "NX", "1", "probe"]),
    ("ZRANGE", &["K2", "0", "0"]),
    ("ZSCORE", &["K2", "probe"]),
    ("ZCARD", &["K2"]),
    ("ZREMRANGEBYSCORE", &["K2", "-inf", "0"]),
    ("ZREM", &["K2", "probe"]),
    ("HSET", &["K3", "probe", "1"]),
    ("HGET", &["K3", "probe"]),
    ("HMGET", &["K3", "probe"]),
    ("HDEL", &["K3", "probe"]),
    ("PUBLISH", &["CH", "probe"]),
];

/// Commands the client sends itself, beside the scripts, with the arguments
/// the probe checks them with (`SCAN` for `list`/`lockctl`, `WAIT` for
/// `replicas`; `INFO` to tell a cluster node at connect). `EVALSHA` and
/// `SCRIPT LOAD` are checked by running the probe.
const CLIENT_COMMANDS: &[(&str, &[&str])] = &[
    ("PING", &[]),
    ("SUBSCRIBE", &["CH"]),
    ("UNSUBSCRIBE", &["CH"]),
    ("INFO", &["cluster"]),
    ("SCAN", &["0"]),
    ("WAIT", &["0", "1"]),
];

/// The probe: returns each command of [`SCRIPT_COMMANDS`] and
/// [`CLIENT_COMMANDS`] the user may not run (with its arguments).
/// KEYS\[1..3\] as `K1..K3`, ARGV\[1\] the channel.
static PROBE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(&PROBE_CODE));

/// The text of [`PROBE`].
static PROBE_CODE: LazyLock<String> = LazyLock::new(|| {
    let mut lua = String::from(
        "local denied = {}\nlocal function check(...)\n  if not redis.acl_check_cmd(...) then\n    denied[#denied + 1] = table.concat({...}, ' ')\n  end\nend\n",
    );
    for (command, args) in SCRIPT_COMMANDS.iter().chain(CLIENT_COMMANDS) {
        lua.push_str("check('");
        lua.push_str(command);
        lua.push('\'');
        for arg in *args {
            lua.push_str(", ");
            match *arg {
                "K1" => lua.push_str("KEYS[1]"),
                "K2" => lua.push_str("KEYS[2]"),
                "K3" => lua.push_str("KEYS[3]"),
                "CH" => lua.push_str("ARGV[1]"),
                literal => {
                    lua.push('\'');
                    lua.push_str(literal);
                    lua.push('\'');
                }
            }
        }
        lua.push_str(")\n");
    }
    lua.push_str("return denied\n");
    lua
});

/// The Redis ACL rule a service whose clients use key prefix `prefix` needs:
/// the commands the lock scripts and the client run, on the prefix's keys
/// (`~prefix*`) and channels (`&prefix*`), and nothing else. Append it to
/// `ACL SETUSER <user> on ><password>`. A client checks at connect that its
/// user may run them, and fails with [`LockError::Config`] naming what is
/// denied. A Cluster also needs `+cluster|slots +asking`, a Sentinel-watched
/// primary `+role`.
///
/// ```
/// let rule = lock_runtime::acl_rule("lock:");
/// assert!(rule.starts_with("resetkeys ~lock:* resetchannels &lock:* -@all +"));
/// ```
pub fn acl_rule(prefix: &str) -> String {
    let mut commands: Vec<String> = SCRIPT_COMMANDS
        .iter()
        .map(|(command, _)| command.to_lowercase())
        .chain(
            CLIENT_COMMANDS
                .iter()
                .map(|(command, _)| command.to_lowercase()),
        )
        .chain(["evalsha".to_owned(), "script|load".to_owned()])
        .collect();
    commands.sort();
    commands.dedup();
    let commands: Vec<String> = commands
        .iter()
        .map(|command| format!("+{command}"))
        .collect();
    format!(
        "resetkeys ~{prefix}* resetchannels &{prefix}* -@all {}",
        commands.join(" ")
    )
}

/// Whether `error` is the server refusing a command, a key or a channel to
/// this user.
pub(crate) fn is_denied(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
        || error.to_string().contains("NOPERM")
}

/// Runs the probe on `connection` (one server) for a client of `prefix` on
/// `server`: `Ok` if every command a lock needs is allowed, else a
/// [`LockError::Config`] naming what was denied and the rule to grant. Other
/// failures (the connection lost, a server before Redis 7) are left to the
/// first lock request to report.
pub(crate) async fn check(
    connection: &mut impl ConnectionLike,
    server: &str,
    prefix: &str,
) -> Result<(), LockError> {
    let denied = |what: String| LockError::Config {
        subject: format!("Redis user of the client for {server}"),
        reason: format!(
            "{what}; without it this client could take locks it cannot release. Grant the rule the README's \"Least privilege\" gives: ACL SETUSER <user> {} (if the user may take only some lock names, turn this check off with `check_permissions(false)`)",
            acl_rule(prefix)
        ),
    };
    let tag = [prefix, "{probe}"].concat();
    let mut probe = scripts::evalsha(&PROBE, 3);
    probe
        .arg(format!("{tag}:string"))
        .arg(format!("{tag}:zset"))
        .arg(format!("{tag}:hash"))
        .arg(format!("{prefix}notices:probe"));
    // Loaded every time, as a server that restarted needs it.
    if let Err(error) = PROBE.load_async(connection).await {
        return if is_denied(&error) {
            Err(denied(format!("SCRIPT LOAD is denied ({error})")))
        } else {
            tracing::debug!(%server, %error, "permission probe not run");
            Ok(())
        };
    }
    match probe.query_async::<Vec<String>>(connection).await {
        Ok(refused) if refused.is_empty() => Ok(()),
        Ok(refused) => Err(denied(format!(
            "the user may not run: {}",
            refused.join("; ")
        ))),
        Err(error) if is_denied(&error) => Err(denied(format!("EVALSHA is denied ({error})"))),
        Err(error) => {
            tracing::debug!(%server, %error, "permission probe failed");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_every_command_once_on_the_prefix() {
        let rule = acl_rule("billing:lock:");
        assert!(
            rule.starts_with("resetkeys ~billing:lock:* resetchannels &billing:lock:* -@all +")
        );
        for command in [
            "+zrange",
            "+evalsha",
            "+script|load",
            "+publish",
            "+subscribe",
        ] {
            assert_eq!(
                rule.matches(&format!("{command} ")).count() + usize::from(rule.ends_with(command)),
                1,
                "{command}: {rule}"
            );
        }
        assert_eq!(rule.matches("+pexpire").count(), 1);
    }

    /// Every command any lock script runs is one the probe checks (a script
    /// that gains a command must add it to [`SCRIPT_COMMANDS`]).
    #[test]
    fn the_probe_covers_every_command_of_the_scripts() {
        let mut used = std::collections::BTreeSet::new();
        {
            let code = include_str!("scripts.rs");
            for call in ["redis.call('", "redis.pcall('"] {
                for (at, _) in code.match_indices(call) {
                    let rest = &code[at + call.len()..];
                    if let Some(end) = rest.find('\'') {
                        used.insert(rest[..end].to_owned());
                    }
                }
            }
        }
        assert!(used.len() > 15, "{used:?}");
        for command in used {
            assert!(
                SCRIPT_COMMANDS.iter().any(|(probed, _)| *probed == command),
                "{command} is not probed"
            );
        }
    }

    #[test]
    fn the_probe_calls_every_script_command() {
        let code = PROBE_CODE.as_str();
        for (command, _) in SCRIPT_COMMANDS.iter().chain(CLIENT_COMMANDS) {
            assert!(code.contains(&format!("check('{command}'")), "{command}");
        }
    }
}
