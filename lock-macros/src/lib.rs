//! The `#[redis_locked]` attribute. Use it through `lock-runtime`
//! (`use lock_runtime::redis_locked;`), whose docs describe it in full.

mod attr;
mod expand;
mod item;
#[cfg(test)]
mod snapshot_tests;

use proc_macro::TokenStream;

/// Runs the function on at most one worker at a time, across every process and
/// machine that shares the Redis: the call takes a lease on the lock `name`, keeps it
/// alive with a heartbeat while the body runs, and releases it however the body
/// ends (return, `?`, panic, the caller dropping the future).
///
/// ```no_run
/// use lock_runtime::{LockError, redis_locked};
///
/// #[redis_locked(name = "invoice:{id}", ttl = 30)]
/// async fn settle(id: u64) -> Result<u64, LockError> {
///     // only one worker settles invoice `id` at a time
///     Ok(id)
/// }
/// ```
///
/// When the lock cannot be taken (busy past `wait`, Redis unreachable) or the lease
/// is lost mid-body, the function returns a [`LockError`] through its return type:
/// `Result<T, E>` with `E: From<LockError>` (including `std::io::Result`,
/// `anyhow::Result` and aliases) returns `Err(error.into())`; `()` logs a `tracing`
/// event and returns (a job that skips a busy tick); any other return type is a
/// compile error that says so.
///
/// # Arguments
///
/// `name` (**required**): the lock's name. `{binding}` interpolates an argument
/// (including one bound by a pattern), with `format!` rules.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// # struct Path<T>(T);
/// #[redis_locked(name = "account:{id}:{currency}", ttl = 10)]
/// async fn rebalance(Path(id): Path<u64>, currency: &str) -> Result<(), LockError> {
///     Ok(())
/// }
/// ```
///
/// A list takes several locks at once, all or nothing
/// (`LockClient::acquire_all`): in one global order, so two calls naming the
/// same locks in opposite orders cannot deadlock; duplicates count once, and
/// losing any one lease loses the set. `guard.fencing_token_of(name)` gives
/// each lock's token.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// #[redis_locked(name = ["account:{from}", "account:{to}"], ttl = 10, wait = "2s")]
/// async fn transfer(from: u64, to: u64, amount: u64) -> Result<(), LockError> {
///     // neither account is touched by another transfer meanwhile
///     Ok(())
/// }
/// ```
///
/// `ttl` (**required**): the lease length: whole seconds (`ttl = 30`) or a string with a
/// unit (`"500ms"`, `"30s"`, `"5m"`, `"1h"`). If the holder dies, the lock frees
/// itself this long after the last heartbeat.
///
/// `wait`: how long to wait for a busy lock: `"5s"`, `0` (try once), or `"forever"`
/// (the default: mutex semantics).
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// #[redis_locked(name = "report", ttl = 60, wait = "5s")]
/// async fn report() -> Result<(), LockError> { Ok(()) }
/// ```
///
/// `heartbeat`: how often the holder extends the lease (default ttl / 3); must be
/// shorter than the ttl minus its clock-drift allowance.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// #[redis_locked(name = "import", ttl = "30s", heartbeat = "5s")]
/// async fn import() -> Result<(), LockError> { Ok(()) }
/// ```
///
/// `client`: where the lock lives: any expression giving a `LockClient` or a
/// reference to one (default: the process-wide client, see
/// `lock_runtime::default_client`).
///
/// ```no_run
/// # use lock_runtime::{LockClient, LockError, redis_locked};
/// struct Service { locks: LockClient }
///
/// impl Service {
///     #[redis_locked(name = "order:{id}", ttl = 10, client = self.locks)]
///     async fn ship(&self, id: u64) -> Result<(), LockError> { Ok(()) }
/// }
/// ```
///
/// `guard`: binds a `LockHandle` for the body: `fencing_token()`, `is_held()`,
/// `check()?`, `lost().await`, `time_left()`.
///
/// `fencing`: hand out a strictly increasing fencing token with each acquisition,
/// for storage that rejects writes from a holder whose lease has passed on.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// # async fn write_with_token(_: u64, _: Option<u64>) -> Result<(), LockError> { Ok(()) }
/// #[redis_locked(name = "ledger:{account}", ttl = 30, guard = lock, fencing = true)]
/// async fn post(account: u64) -> Result<(), LockError> {
///     lock.check()?;
///     write_with_token(account, lock.fencing_token()).await
/// }
/// ```
///
/// `fair`: serve waiters strictly in arrival order (releases hand the lock to the
/// longest-waiting waiter in both modes; the default also lets a newcomer take a
/// lock it finds free ahead of the queue). Every user of the lock must agree on it.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// #[redis_locked(name = "printer", ttl = 30, fair = true)]
/// async fn print(job: u64) -> Result<(), LockError> { Ok(()) }
/// ```
///
/// `reentrant`: a call made while this lock is already held by the calling
/// code (inside another function locked on the same name, in the same task, or
/// on the same thread for a sync `fn`) runs under that hold instead of waiting
/// on itself, and releases nothing at its end; the outermost call releases.
/// Without it such a call fails at once with `LockError::Reentrant`. A task
/// spawned from the body is a different holder.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// #[redis_locked(name = "account:{id}", ttl = 30, reentrant = true)]
/// async fn close(id: u64) -> Result<(), LockError> {
///     settle(id).await // locks the same account: runs under this hold
/// }
///
/// #[redis_locked(name = "account:{id}", ttl = 30, reentrant = true)]
/// async fn settle(id: u64) -> Result<(), LockError> { Ok(()) }
/// ```
///
/// `mode`: `"read"` or `"write"` for a read/write lock: any number of readers
/// hold it together, a writer holds it alone, and a waiting writer blocks new
/// readers (so it is not starved). Each holder has its own lease.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// #[redis_locked(name = "catalog", ttl = 10, mode = "read")]
/// async fn show_catalog() -> Result<(), LockError> { Ok(()) }
///
/// #[redis_locked(name = "catalog", ttl = 60, mode = "write")]
/// async fn rebuild_catalog() -> Result<(), LockError> { Ok(()) }
/// ```
///
/// `permits`: a semaphore: at most this many holders of the name at once,
/// each with its own leased permit, given back by its release or, if the
/// holder dies, after its ttl. With `fair = true` permits go in arrival order.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// // The partner API allows 4 concurrent calls across the fleet.
/// #[redis_locked(name = "partner-api", ttl = 30, permits = 4, wait = "10s")]
/// async fn call_partner(order: u64) -> Result<(), LockError> { Ok(()) }
/// ```
///
/// `on_lost` (`async fn` only): `"cancel"` (default) drops the body at its next
/// await when the lease is lost; `"notify"` leaves it running to react through
/// `lock.lost()`. Either way the call then returns `LockError::Lost`, never the
/// body's value: a broken lease is not mistaken for success. A sync body cannot be
/// interrupted; it runs to its end and the call returns `Lost`.
///
/// ```no_run
/// # use lock_runtime::{LockError, redis_locked};
/// #[redis_locked(name = "sync", ttl = 30, guard = lock, on_lost = "notify")]
/// async fn sync_catalog() -> Result<(), LockError> {
///     tokio::select! {
///         error = lock.lost() => { /* roll back */ Err(error) }
///         () = tokio::time::sleep(std::time::Duration::from_secs(1)) => Ok(()),
///     }
/// }
/// ```
///
/// `max_hold`: the longest one hold may last; past it the lease is no longer
/// extended and the call ends as lost (a stuck holder cannot keep the lock forever).
///
/// `min_hold`: for scheduled jobs: a body that ends sooner leaves the lock to expire
/// at start + `min_hold` instead of releasing it, so a node whose clock lags does not
/// run the same tick again.
///
/// ```no_run
/// # use lock_runtime::redis_locked;
/// #[redis_locked(name = "cleanup", ttl = 60, wait = 0, min_hold = "30s", max_hold = "10m")]
/// async fn cleanup() {
///     // runs once per tick across the fleet; a busy tick is skipped and logged
/// }
/// ```
///
/// `crate`: the path to `lock_runtime` for crates that re-export it (default
/// `::lock_runtime`), e.g. `crate = "my_app::locks"`.
///
/// Plain `fn`s work too: the function blocks its thread while waiting, and the
/// heartbeat runs on the runtime's own background thread, so it works from
/// `std::thread` workers and is safe to call inside an async runtime.
///
/// ```no_run
/// # use lock_runtime::redis_locked;
/// #[redis_locked(name = "export", ttl = "5m", wait = 0)]
/// fn nightly_export(path: &std::path::Path) -> std::io::Result<()> {
///     std::fs::write(path, b"done")
/// }
/// ```
///
/// Every argument error is a compile error at the offending token, with the fix.
///
/// Things to know:
/// - Arguments the body never uses are dropped when the function returns, after
///   the lock is released (not before, as without the attribute).
/// - The body runs inside a closure: `#[track_caller]` on a sync function no longer
///   reports the caller's location to code in the body.
/// - A plain `fn` returning a future (`-> impl Future`, `Pin<Box<dyn Future>>`)
///   would hold the lock only while building the future, not while it runs: write
///   an `async fn` instead.
///
/// # What it expands to
///
/// The signature stays as written; the body moves, unchanged, into a closure that the
/// runtime calls while the lock is held. For
///
/// ```ignore
/// #[redis_locked(name = "invoice:{id}", ttl = 30)]
/// pub async fn settle(id: u64) -> Result<Receipt, AppError> { body }
/// ```
///
/// the attribute generates (helper names are hygienic: the body cannot see them)
///
/// ```ignore
/// pub async fn settle(id: u64) -> Result<Receipt, AppError> {
///     let __lock_names: [String; 1] = [format!("invoice:{id}")]; // one per name
///     let __lock_client: Option<LockClient> = None; // `client = …` gives Some(…)
///     let __lock_options: LockOptions = options(Duration::from_millis(30000)); // + wait, heartbeat…
///     ::lock_runtime::__private::run_async(__lock_client, &__lock_names, &__lock_options,
///         move |_: LockHandle| async move {
///             if false { let r: Result<Receipt, AppError> = loop {}; return r; } // fixes the type for `?`
///             { body }
///         },
///     )
///     .await
/// }
/// ```
///
/// `run_async` is `LockClient::run_with` (`run_all_with` for a list of names) on
/// the given (or default) client, with the error converted through the return
/// type; a sync `fn` calls `run_blocking`, which is `LockClient::run_blocking`
/// (`run_all_blocking`). The exact output for several shapes is checked in
/// under `lock-macros/snapshots/`.
#[proc_macro_attribute]
pub fn redis_locked(args: TokenStream, item: TokenStream) -> TokenStream {
    redis_locked_impl(args.into(), item.into()).into()
}

/// The expansion, on `proc_macro2` tokens so it can be tested and snapshotted.
fn redis_locked_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let mut errors = attr::Errors::default();
    let parsed = attr::parse(args, &mut errors);
    let function = match item::read(item) {
        Ok(function) => function,
        Err((error, original)) => {
            errors.push(error);
            return with_errors(errors, original);
        }
    };
    if let Some(args) = &parsed {
        item::check(args, &function, &mut errors);
    }
    match (parsed, errors.is_empty()) {
        (Some(args), true) => match expand::expand(&args, &function) {
            Some(expanded) => expanded,
            None => with_errors(errors, quote::quote!(#function)),
        },
        _ => with_errors(errors, quote::quote!(#function)),
    }
}

/// The errors as `compile_error!`s next to the original item, unchanged, so the
/// IDE keeps working on it (as tokio-macros does).
fn with_errors(
    errors: attr::Errors,
    original: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let compile_errors = errors
        .finish()
        .err()
        .map(|error| error.to_compile_error())
        .unwrap_or_default();
    quote::quote! {
        #compile_errors
        #original
    }
}
