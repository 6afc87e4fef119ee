//! Generates the rewritten function.
//!
//! The signature is left alone; the body moves, unchanged and emitted once, into a
//! closure (`async move` block for an `async fn`) that the runtime calls while the
//! lock is held. Helper names use `Span::mixed_site()`, so the body cannot see them.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::visit_mut::VisitMut;
use syn::{Ident, ItemFn, ReturnType, Type};

use crate::attr::{Args, ModeArg, OnLostArg, TtlArg, WaitArg};

/// The rewritten function; `None` if `name` or `ttl` is missing (already reported).
pub(crate) fn expand(args: &Args, function: &ItemFn) -> Option<TokenStream> {
    let (false, Some(ttl)) = (args.names.is_empty(), &args.ttl) else {
        return None;
    };
    let names = &args.names;
    let count = proc_macro2::Literal::usize_unsuffixed(names.len());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = function;
    let krate = &args.krate;
    let private = quote!(#krate::__private);
    let mixed = Span::mixed_site();

    let client = match &args.client {
        Some(client) => quote!(::core::option::Option::Some(#private::client(&(#client)))),
        None => quote!(::core::option::Option::None),
    };
    let options = options(args, ttl, &private);
    let handle = match &args.guard {
        Some(guard) => quote!(#guard),
        None => quote_spanned!(mixed=> _),
    };
    let fake_return = fake_return(&sig.output);
    // The body's statements, unchanged, as the closure's own block (no extra
    // braces: rustc would suggest removing them, in the user's code).
    let stmts = &block.stmts;
    let return_span = match &sig.output {
        ReturnType::Default => Span::call_site(),
        ReturnType::Type(_, ty) => syn::spanned::Spanned::span(&**ty),
    };
    // Spanned at the return type: a return type the runtime cannot convert a
    // `LockError` into is reported there.
    let name_var = Ident::new("__lock_names", mixed);
    let client_var = Ident::new("__lock_client", mixed);
    let options_var = Ident::new("__lock_options", mixed);
    let private_at_return = respan(private.clone(), return_span);
    let call = if sig.asyncness.is_some() {
        quote_spanned! {return_span=>
            #private::run_async(
                #client_var,
                &#name_var,
                &#options_var,
                #private_at_return::LockedReturn::from_lock_error,
                move |#handle: #private::LockHandle| async move {
                    #fake_return
                    #(#stmts)*
                },
            )
            .await
        }
    } else {
        quote_spanned! {return_span=>
            #private::run_blocking(
                #client_var,
                &#name_var,
                &#options_var,
                #private_at_return::LockedReturn::from_lock_error,
                move |#handle: #private::LockHandle| {
                    #fake_return
                    #(#stmts)*
                },
            )
        }
    };

    let body = quote_spanned! {mixed=>
        let #name_var: [::std::string::String; #count] = [#(::std::format!(#names)),*];
        let #client_var: ::core::option::Option<#private::LockClient> = #client;
        let #options_var: #private::LockOptions = #options;
        #call
    };
    // syn keeps the body's inner attributes (`#![allow(..)]`) with the outer ones;
    // they go back at the top of the body.
    let (outer, inner): (Vec<_>, Vec<_>) = attrs
        .iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Outer));
    Some(quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #body
        }
    })
}

/// The same tokens, every one with `span` (for where errors are reported).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = proc_macro2::TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

fn millis(private: &TokenStream, ms: u64) -> TokenStream {
    quote!(#private::Duration::from_millis(#ms))
}

fn options(args: &Args, ttl: &TtlArg, private: &TokenStream) -> TokenStream {
    let ttl = match ttl {
        TtlArg::Literal(ttl) => millis(private, ttl.ms),
        TtlArg::Expr(expr) => quote!(#expr),
    };
    let mut options = quote!(#private::options(#ttl));
    match &args.wait {
        WaitArg::Forever => {}
        WaitArg::TryOnce => options.extend(quote!(.wait(#private::Wait::TryOnce))),
        WaitArg::For(ms) => {
            let wait = millis(private, *ms);
            options.extend(quote!(.wait(#private::Wait::For(#wait))));
        }
        WaitArg::Expr(expr) => options.extend(quote!(.wait(#private::wait(#expr)))),
    }
    if let Some(heartbeat) = args.heartbeat {
        let heartbeat = millis(private, heartbeat.ms);
        options.extend(quote!(.heartbeat(#heartbeat)));
    }
    if args.fencing {
        options.extend(quote!(.fencing(true)));
    }
    if args.fair {
        options.extend(quote!(.fair(true)));
    }
    if args.reentrant {
        options.extend(quote!(.reentrant(true)));
    }
    match args.mode {
        Some(ModeArg::Read) => options.extend(quote!(.mode(#private::Mode::Read))),
        Some(ModeArg::Write) => options.extend(quote!(.mode(#private::Mode::Write))),
        None => {}
    }
    if let Some(permits) = args.permits {
        options.extend(quote!(.permits(#permits)));
    }
    if let Some(max_hold) = args.max_hold {
        let max_hold = millis(private, max_hold.ms);
        options.extend(quote!(.max_hold(#max_hold)));
    }
    if let Some(min_hold) = args.min_hold {
        let min_hold = millis(private, min_hold.ms);
        options.extend(quote!(.min_hold(#min_hold)));
    }
    if let Some((OnLostArg::Notify, _)) = args.on_lost {
        options.extend(quote!(.on_lost(#private::OnLost::Notify)));
    }
    options
}

/// A never-taken `return` typed with the function's return type (`impl Trait`
/// erased to `_`), spanned at that type: it fixes the body's type for `?` and
/// `return`, and makes type errors point at the user's code (as tracing does).
fn fake_return(output: &ReturnType) -> TokenStream {
    let (ty, span) = match output {
        // `let x: ! = …` needs a nightly feature; a `-> !` body types itself.
        ReturnType::Type(_, ty) if matches!(**ty, Type::Never(_)) => return TokenStream::new(),
        ReturnType::Default => (quote!(()), Span::call_site()),
        ReturnType::Type(_, ty) => {
            let span = syn::spanned::Spanned::span(&**ty);
            let mut ty = (**ty).clone();
            EraseImplTrait.visit_type_mut(&mut ty);
            (ty.into_token_stream(), span)
        }
    };
    let fake = syn::Ident::new("__lock_fake_return", Span::mixed_site());
    quote_spanned! {span=>
        #[allow(
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake: #ty = loop {};
            return #fake;
        }
    }
}

struct EraseImplTrait;

impl VisitMut for EraseImplTrait {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            let span = syn::spanned::Spanned::span(&*impl_trait);
            *ty = Type::Infer(syn::TypeInfer {
                attrs: Vec::new(),
                underscore_token: syn::Token![_](span),
            });
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}
