//! Expansion snapshots: what the attribute generates for the main shapes of
//! function, pretty-printed and checked in under `snapshots/`, so a reviewer sees
//! exactly what changes. Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p lock-macros`.

use quote::quote;

fn check(name: &str, args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) {
    let expanded = crate::redis_locked_impl(args, item);
    let file: syn::File = match syn::parse2(expanded.clone()) {
        Ok(file) => file,
        Err(error) => panic!("the expansion of {name} does not parse: {error}\n{expanded}"),
    };
    let pretty = prettyplease::unparse(&file);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("snapshots")
        .join(format!("{name}.expanded.rs"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &pretty).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == pretty,
        "the expansion of {name} changed; run `UPDATE_SNAPSHOTS=1 cargo test -p lock-macros` and review the diff of {}\n--- new ---\n{pretty}",
        path.display()
    );
}

#[test]
fn free_async_fn() {
    check(
        "free_async_fn",
        quote!(name = "invoice:{id}", ttl = 30),
        quote! {
            pub async fn settle(id: u64) -> Result<Receipt, AppError> {
                let receipt = charge(id).await?;
                Ok(receipt)
            }
        },
    );
}

#[test]
fn method() {
    check(
        "method",
        quote!(
            name = "account:{id}",
            ttl = 10,
            wait = "2s",
            client = self.locks
        ),
        quote! {
            async fn deposit(&self, id: u64, amount: u64) -> Result<u64, LockError> {
                self.store.add(id, amount).await
            }
        },
    );
}

#[test]
fn sync_fn() {
    check(
        "sync_fn",
        quote!(name = "export", ttl = "5m", wait = 0),
        quote! {
            fn nightly_export(path: &Path) -> std::io::Result<()> {
                std::fs::write(path, b"done")
            }
        },
    );
}

#[test]
fn every_argument() {
    check(
        "every_argument",
        quote!(
            name = "ledger:{account}",
            ttl = "30s",
            wait = "5s",
            heartbeat = "10s",
            client = state.locks,
            guard = lock,
            fencing = true,
            fair = true,
            reentrant = true,
            on_lost = "notify",
            max_hold = "10m",
            min_hold = "1s",
            crate = "my_app::locks"
        ),
        quote! {
            async fn post(state: &AppState, account: u64) -> Result<impl Display, AppError> {
                state.ledger.write(account, lock.fencing_token()).await?;
                Ok(account)
            }
        },
    );
}

#[test]
fn several_names() {
    check(
        "several_names",
        quote!(
            name = ["account:{from}", "account:{to}"],
            ttl = 10,
            guard = lock
        ),
        quote! {
            async fn transfer(from: u64, to: u64, amount: u64) -> Result<(), LockError> {
                move_money(from, to, amount, lock.fencing_token_of("x")).await
            }
        },
    );
}

#[test]
fn shapes() {
    check(
        "shapes",
        quote!(name = "partner-api", ttl = 30, permits = 4, fair = true),
        quote! {
            async fn call_partner(order: u64) -> Result<(), LockError> {
                send(order).await
            }
        },
    );
    check(
        "read_mode",
        quote!(name = "catalog", ttl = 10, mode = "read", wait = "1s"),
        quote! {
            fn show_catalog() -> Result<(), LockError> {
                Ok(())
            }
        },
    );
}
