//! The `#[redis_locked]` attribute. Use it through `lock-runtime`
//! (`use lock_runtime::redis_locked;`), whose docs describe it in full.

mod attr;
mod expand;
mod item;

use proc_macro::TokenStream;

/// See `lock_runtime::redis_locked` for the documentation.
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
