//! Parses and validates the arguments of `#[redis_locked(...)]`.
//!
//! Every error carries the span of the token at fault and says the fix; all of them
//! are collected and reported together.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path};

/// The keys the attribute accepts, in the order the docs list them.
pub(crate) const KEYS: &[&str] = &[
    "name",
    "ttl",
    "wait",
    "heartbeat",
    "client",
    "guard",
    "fencing",
    "fair",
    "reentrant",
    "mode",
    "permits",
    "on_lost",
    "max_hold",
    "min_hold",
    "crate",
];

/// A duration in milliseconds, with the span of the value that gave it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Millis {
    pub(crate) ms: u64,
    pub(crate) span: Span,
}

pub(crate) enum WaitArg {
    TryOnce,
    For(u64),
    Forever,
    /// Decided at run time: an expression giving a `Duration` or a `Wait`.
    Expr(Expr),
}

/// The lease length: a literal (checked at compile time) or an expression giving a
/// `Duration` at run time (checked by the runtime, e.g. from configuration).
pub(crate) enum TtlArg {
    Literal(Millis),
    Expr(Expr),
}

/// `mode = "read"` or `"write"` (`"exclusive"`, the default, is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModeArg {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnLostArg {
    Cancel,
    Notify,
}

/// The arguments as far as they are valid (`name` and `ttl` are `Some` whenever no
/// error was reported).
pub(crate) struct Args {
    /// One lock name, or the list given as `name = [..]`.
    pub(crate) names: Vec<LitStr>,
    pub(crate) ttl: Option<TtlArg>,
    pub(crate) wait: WaitArg,
    pub(crate) heartbeat: Option<Millis>,
    pub(crate) client: Option<Expr>,
    pub(crate) guard: Option<Ident>,
    pub(crate) fencing: bool,
    pub(crate) fair: bool,
    pub(crate) reentrant: bool,
    pub(crate) mode: Option<ModeArg>,
    pub(crate) permits: Option<u32>,
    pub(crate) on_lost: Option<(OnLostArg, Span)>,
    pub(crate) max_hold: Option<Millis>,
    pub(crate) min_hold: Option<Millis>,
    pub(crate) krate: Path,
}

/// Collects errors so that all of them are reported at once (serde's `Ctxt`).
#[derive(Default)]
pub(crate) struct Errors {
    error: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match self.error.as_mut() {
            Some(all) => all.combine(error),
            None => self.error = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.error.is_none()
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.error.map_or(Ok(()), Err)
    }
}

/// Values as written, before interpretation; `None` until the key appears.
#[derive(Default)]
struct Raw {
    values: Vec<(String, Span, Expr)>,
    /// Valid keys an unknown key was taken for (`tll` for `ttl`): already
    /// reported, so not reported again as missing.
    meant: Vec<&'static str>,
}

/// Parses the attribute's tokens. Syntax errors (not `key = value`) stop parsing
/// (`None`); all other problems are collected in `errors`, and what was valid is
/// returned so the checks against the function can still run.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Option<Args> {
    let mut raw = Raw::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(|ident| ident.to_string().trim_start_matches("r#").to_owned())
            .unwrap_or_default();
        let span = meta.path.span();
        if !KEYS.contains(&key.as_str()) {
            let shown = quote::ToTokens::to_token_stream(&meta.path)
                .to_string()
                .replace(' ', "");
            let message = match nearest_key(&key) {
                Some(meant) => {
                    raw.meant.push(meant);
                    format!(
                        "unknown argument `{shown}` for #[redis_locked]; did you mean `{meant}`? ({})",
                        example(meant)
                    )
                }
                None => format!(
                    "unknown argument `{shown}` for #[redis_locked]; valid arguments are: {}",
                    KEYS.join(", ")
                ),
            };
            errors.at(span, message);
            if meta.input.peek(syn::Token![=]) {
                let _: Expr = meta.value()?.parse()?;
            }
            return Ok(());
        }
        if !meta.input.peek(syn::Token![=]) {
            errors.at(span, format!("`{key}` needs a value: {}", example(&key)));
            return Ok(());
        }
        let value: Expr = meta.value()?.parse()?;
        if raw.values.iter().any(|(seen, _, _)| *seen == key) {
            errors.at(span, format!("`{key}` is given twice; keep one"));
            return Ok(());
        }
        raw.values.push((key, span, value));
        Ok(())
    });
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
        return None;
    }
    Some(interpret(raw, errors))
}

/// The valid key an unknown one is most likely a typo of: at most one edit per
/// three letters away (`tll` → `ttl`, `hearbeat` → `heartbeat`), or the same
/// letters in another case.
fn nearest_key(unknown: &str) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase();
    KEYS.iter()
        .map(|key| (edit_distance(&unknown, key), *key))
        .filter(|(distance, key)| *distance <= (key.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Levenshtein distance, counting a swap of two neighbouring letters as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // rows[i][j]: the distance between a[..i] and b[..j].
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

fn example(key: &str) -> &'static str {
    match key {
        "name" => {
            "e.g. `name = \"invoice:{id}\"`, or several locks at once: `name = [\"account:{from}\", \"account:{to}\"]`"
        }
        "ttl" => {
            "e.g. `ttl = 30` (seconds), `ttl = \"500ms\"`, or an expression giving a `Duration`"
        }
        "wait" => {
            "e.g. `wait = \"5s\"`, `wait = 0` (try once), `wait = \"forever\"`, or an expression giving a `Duration` or `Wait`"
        }
        "heartbeat" => "e.g. `heartbeat = \"10s\"` (must be shorter than `ttl`)",
        "client" => "e.g. `client = self.locks` or `client = state.locks`",
        "guard" => "e.g. `guard = lock`, then use `lock.fencing_token()` in the body",
        "fencing" => "`fencing = true` or `fencing = false`",
        "fair" => "`fair = true` (waiters served in arrival order) or `fair = false`",
        "mode" => "`mode = \"read\"` (shared with other readers) or `mode = \"write\"` (alone)",
        "permits" => "e.g. `permits = 4`: at most 4 holders at once",
        "reentrant" => {
            "`reentrant = true` (a call made while this lock is held here runs under that hold) or `reentrant = false`"
        }
        "on_lost" => "`on_lost = \"cancel\"` or `on_lost = \"notify\"`",
        "max_hold" => "e.g. `max_hold = \"10m\"`",
        "min_hold" => "e.g. `min_hold = \"30s\"`",
        "crate" => "e.g. `crate = \"my_reexport::lock_runtime\"`",
        _ => "",
    }
}

fn interpret(raw: Raw, errors: &mut Errors) -> Args {
    let mut names = Vec::new();
    let mut ttl = None;
    let mut wait = WaitArg::Forever;
    let mut ttl_literal: Option<Millis> = None;
    let mut heartbeat = None;
    let mut client = None;
    let mut guard = None;
    let mut fencing = false;
    let mut fair = false;
    let mut reentrant = false;
    let mut mode: Option<(ModeArg, Span)> = None;
    let mut permits: Option<(u32, Span)> = None;
    let mut on_lost = None;
    let mut max_hold = None;
    let mut min_hold = None;
    let mut krate: Path = syn::parse_quote!(::lock_runtime);
    let given = |wanted: &str| raw.values.iter().any(|(key, _, _)| key == wanted);
    // A key taken for a typo of `name` or `ttl` was reported as such already.
    let given = |wanted: &str| given(wanted) || raw.meant.contains(&wanted);
    let (name_given, ttl_given) = (given("name"), given("ttl"));
    let fail = |errors: &mut Errors, span: Span, message: String| errors.at(span, message);
    // Where each argument was given, for errors about two that do not go together.
    let given_at: Vec<(String, Span)> = raw
        .values
        .iter()
        .map(|(key, span, _)| (key.clone(), *span))
        .collect();
    let given_at = |wanted: &str| {
        given_at
            .iter()
            .find(|(key, _)| key == wanted)
            .map(|(_, span)| *span)
    };
    for (key, _key_span, value) in raw.values {
        let span = value.span();
        let wrong = |what: &str| format!("`{key}` {what}: {}", example(&key));
        match key.as_str() {
            "name" => match &value {
                Expr::Array(list) if list.elems.is_empty() => fail(
                    errors,
                    span,
                    "`name = []` names no lock: list one or more, e.g. `name = [\"account:{from}\", \"account:{to}\"]`".into(),
                ),
                Expr::Array(list) => {
                    for item in &list.elems {
                        match lit(item) {
                            Some(Lit::Str(text)) if text.value().is_empty() => fail(
                                errors,
                                item.span(),
                                "a lock name in `name = [..]` must not be empty: e.g. `\"account:{to}\"`".into(),
                            ),
                            Some(Lit::Str(text)) => names.push(text.clone()),
                            _ => fail(
                                errors,
                                item.span(),
                                "each lock name in `name = [..]` must be a string literal, e.g. `name = [\"account:{from}\", \"account:{to}\"]`".into(),
                            ),
                        }
                    }
                }
                _ => match lit(&value) {
                    Some(Lit::Str(lit)) if lit.value().is_empty() => {
                        fail(errors, span, "`name` must not be empty: e.g. `name = \"invoice:{id}\"`".into())
                    }
                    Some(Lit::Str(lit)) => names.push(lit.clone()),
                    _ => fail(errors, span, wrong("must be a string literal, or a list of them")),
                },
            },
            "ttl" if lit(&value).is_none() && !negated_literal(&value) => {
                ttl = Some(TtlArg::Expr(value));
            }
            "ttl" | "heartbeat" | "max_hold" | "min_hold" => match duration(&value, &key) {
                Ok(ms) => {
                    let millis = Some(Millis { ms, span });
                    match key.as_str() {
                        "ttl" => {
                            ttl_literal = millis;
                            ttl = millis.map(TtlArg::Literal);
                        }
                        "heartbeat" => heartbeat = millis,
                        "max_hold" => max_hold = millis,
                        _ => min_hold = millis,
                    }
                }
                Err(message) => fail(errors, span, message),
            },
            "wait" if lit(&value).is_none() && !negated_literal(&value) => {
                wait = WaitArg::Expr(value);
            }
            "wait" => match lit(&value) {
                Some(Lit::Int(int)) if int.base10_digits() == "0" && int.suffix().is_empty() => {
                    wait = WaitArg::TryOnce;
                }
                Some(Lit::Int(int)) if !int.suffix().is_empty() => fail(
                    errors,
                    span,
                    format!(
                        "write a duration with a unit as a string: `wait = \"{}{}\"`",
                        int.base10_digits(),
                        int.suffix()
                    ),
                ),
                Some(Lit::Str(text)) if text.value().trim() == "forever" => wait = WaitArg::Forever,
                Some(Lit::Str(text)) => match parse_duration_text(&text.value()) {
                    Some(0) => wait = WaitArg::TryOnce,
                    Some(ms) => wait = WaitArg::For(ms),
                    None => fail(errors, span, wrong("is not a duration")),
                },
                Some(Lit::Int(_)) => fail(
                    errors,
                    span,
                    "`wait` takes `0` (try once), a string with a unit such as `\"5s\"`, or `\"forever\"`".into(),
                ),
                _ => fail(errors, span, wrong("is not a duration")),
            },
            "client" => client = Some(value),
            "guard" => match &value {
                Expr::Path(path) if path.path.is_ident("self") || path.path.is_ident("Self") => {
                    fail(errors, span, wrong("must be a new name, not `self`"));
                }
                Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
                    guard = path.path.get_ident().cloned();
                }
                _ => fail(errors, span, wrong("must be a plain identifier")),
            },
            "fencing" => match lit(&value) {
                Some(Lit::Bool(on)) => fencing = on.value(),
                _ => fail(errors, span, wrong("must be `true` or `false`")),
            },
            "fair" => match lit(&value) {
                Some(Lit::Bool(on)) => fair = on.value(),
                _ => fail(errors, span, wrong("must be `true` or `false`")),
            },
            "reentrant" => match lit(&value) {
                Some(Lit::Bool(on)) => reentrant = on.value(),
                _ => fail(errors, span, wrong("must be `true` or `false`")),
            },
            "mode" => match lit(&value) {
                Some(Lit::Str(text)) => match text.value().as_str() {
                    "read" => mode = Some((ModeArg::Read, span)),
                    "write" => mode = Some((ModeArg::Write, span)),
                    "exclusive" => {}
                    other => fail(
                        errors,
                        span,
                        format!(
                            "`mode = \"{other}\"` is not a mode: a reader takes `mode = \"read\"` (shared with other readers), a writer `mode = \"write\"` (alone); leave `mode` out for an exclusive lock"
                        ),
                    ),
                },
                _ => fail(errors, span, wrong("must be a string")),
            },
            "permits" => match lit(&value).and_then(|lit| match lit {
                Lit::Int(int) if int.suffix().is_empty() => int.base10_parse::<u32>().ok(),
                _ => None,
            }) {
                Some(0) => fail(
                    errors,
                    span,
                    "`permits = 0` lets nobody in: give at least 1, e.g. `permits = 4` (at most 4 holders at once)".into(),
                ),
                Some(count) => permits = Some((count, span)),
                None => fail(errors, span, wrong("must be a whole number from 1 to 4294967295")),
            },
            "on_lost" => match lit(&value) {
                Some(Lit::Str(text)) if text.value() == "cancel" => on_lost = Some((OnLostArg::Cancel, span)),
                Some(Lit::Str(text)) if text.value() == "notify" => on_lost = Some((OnLostArg::Notify, span)),
                _ => fail(errors, span, wrong("must be \"cancel\" or \"notify\"")),
            },
            "crate" => match lit(&value) {
                Some(Lit::Str(text)) => match text.parse::<Path>() {
                    Ok(path) => krate = path,
                    Err(_) => fail(errors, span, wrong("must be a path in a string")),
                },
                _ => fail(errors, span, wrong("must be a path in a string")),
            },
            _ => {}
        }
    }
    let call_site = Span::call_site();
    if !name_given {
        fail(errors, call_site, "#[redis_locked] needs a lock name: add `name = \"...\"`, e.g. `name = \"invoice:{id}\"`".into());
    }
    if !ttl_given {
        fail(
            errors,
            call_site,
            "#[redis_locked] needs a lease length: add `ttl = 30` (seconds) or `ttl = \"500ms\"`"
                .into(),
        );
    }
    if let Some(ttl) = ttl_literal
        && ttl.ms < 10
    {
        fail(
            errors,
            ttl.span,
            format!(
                "`ttl` ({}) is too short to hold a lease across a network; use at least \"10ms\"",
                show(ttl.ms)
            ),
        );
    }
    // The runtime's limit (`LockOptions::ttl`): the scripts compute with ttls in
    // Lua numbers, exact as Redis integers only below 10^14.
    const MAX_TTL_MS: u64 = 1_000_000_000_000;
    if let Some(ttl) = ttl_literal
        && ttl.ms > MAX_TTL_MS
    {
        fail(
            errors,
            ttl.span,
            format!(
                "`ttl` ({}) is too long; at most 1000000000s (about 31 years)",
                show(ttl.ms)
            ),
        );
    }
    if let (Some(ttl), Some(heartbeat)) = (ttl_literal, heartbeat)
        && heartbeat.ms >= usable_ms(ttl.ms)
    {
        fail(
            errors,
            heartbeat.span,
            format!(
                "`heartbeat` ({}) must be shorter than `ttl` ({}) minus its clock-drift allowance (1% + 2ms), or the lease expires between beats; the default is ttl / 3",
                show(heartbeat.ms),
                show(ttl.ms)
            ),
        );
    }
    if let (Some(min), Some(max)) = (min_hold, max_hold)
        && min.ms > max.ms
    {
        fail(
            errors,
            min.span,
            format!(
                "`min_hold` ({}) must not be longer than `max_hold` ({})",
                show(min.ms),
                show(max.ms)
            ),
        );
    }
    if let Some((_, _)) = permits {
        if let Some(span) = given_at("reentrant").filter(|_| reentrant) {
            fail(errors, span, "`reentrant` cannot go with `permits`: a nested call would need a permit of its own, or none; remove `reentrant`".into());
        }
        if let Some((_, span)) = mode {
            fail(errors, span, "a lock has either `permits` (a semaphore) or a `mode` (read/write), not both; remove one".into());
        }
    }
    if (permits.is_some() || mode.is_some())
        && let Some(span) = given_at("fencing").filter(|_| fencing)
    {
        fail(errors, span, "`fencing` is for exclusive locks: a semaphore's or a read lock's holders are many at once, so no token could order their writes; remove `fencing`, or use an exclusive lock".into());
    }
    if mode.is_some()
        && let Some(span) = given_at("fair").filter(|_| fair)
    {
        fail(errors, span, "`fair` does not go with `mode`: a read/write lock serves a waiting writer before new readers; remove `fair`".into());
    }
    Args {
        names,
        ttl,
        wait,
        heartbeat,
        client,
        guard,
        fencing,
        fair,
        reentrant,
        mode: mode.map(|(mode, _)| mode),
        permits: permits.map(|(count, _)| count),
        on_lost,
        max_hold,
        min_hold,
        krate,
    }
}

fn negated_literal(expr: &Expr) -> bool {
    matches!(expr, Expr::Unary(syn::ExprUnary { op: syn::UnOp::Neg(_), expr, .. }) if lit(expr).is_some())
}

fn lit(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(group) => lit(&group.expr),
        _ => None,
    }
}

/// An integer (seconds) or a string with a unit, > 0, in milliseconds.
fn duration(value: &Expr, key: &str) -> Result<u64, String> {
    if let Expr::Unary(syn::ExprUnary {
        op: syn::UnOp::Neg(_),
        expr,
        ..
    }) = value
        && lit(expr).is_some()
    {
        return Err(format!(
            "`{key}` must be > 0, e.g. `{key} = 30` or `{key} = \"500ms\"`"
        ));
    }
    let ms = match lit(value) {
        Some(Lit::Int(int)) if !int.suffix().is_empty() => {
            return Err(format!(
                "write a duration with a unit as a string: `{key} = \"{}{}\"` (a bare integer is seconds)",
                int.base10_digits(),
                int.suffix()
            ));
        }
        Some(Lit::Int(int)) => match int
            .base10_parse::<u64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1_000))
        {
            Some(ms) => Some(ms),
            None => return Err(format!("`{key}` is too large")),
        },
        Some(Lit::Str(text)) => parse_duration_text(&text.value()),
        _ => None,
    };
    match ms {
        Some(0) => Err(format!(
            "`{key}` must be > 0, e.g. `{key} = 30` or `{key} = \"500ms\"`"
        )),
        Some(ms) => Ok(ms),
        None => Err(format!(
            "`{key}` must be a whole number of seconds (`{key} = 30`) or a string with a unit: \"500ms\", \"30s\", \"5m\", \"1h\""
        )),
    }
}

/// `"500ms"`, `"30s"`, `"5m"`, `"1h"` (whole numbers) to milliseconds.
pub(crate) fn parse_duration_text(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// The part of a lease the holder counts on: ttl minus the runtime's drift
/// allowance (`lock_runtime`'s `drift_allowance`: 1% + 2 ms).
fn usable_ms(ttl_ms: u64) -> u64 {
    ttl_ms.saturating_sub(ttl_ms / 100 + 2)
}

/// A duration for messages: `500ms`, `30s`.
pub(crate) fn show(ms: u64) -> String {
    if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration_text("500ms"), Some(500));
        assert_eq!(parse_duration_text("30s"), Some(30_000));
        assert_eq!(parse_duration_text("5m"), Some(300_000));
        assert_eq!(parse_duration_text("1h"), Some(3_600_000));
        assert_eq!(parse_duration_text("1.5s"), None);
        assert_eq!(parse_duration_text("30"), None);
        assert_eq!(parse_duration_text("s"), None);
    }

    #[test]
    fn typos_name_the_argument_meant() {
        assert_eq!(nearest_key("tll"), Some("ttl"));
        assert_eq!(nearest_key("TTL"), Some("ttl"));
        assert_eq!(nearest_key("nmae"), Some("name"));
        assert_eq!(nearest_key("hearbeat"), Some("heartbeat"));
        assert_eq!(nearest_key("onlost"), Some("on_lost"));
        assert_eq!(nearest_key("timeout"), None);
        assert_eq!(nearest_key("x"), None);
    }
}
