//! Reads the annotated function: checks it is one we can wrap, and finds the
//! bindings its arguments introduce (what `{binding}` in `name` may refer to).

use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, Ident, Item, ItemFn, LitStr, PatIdent};

use crate::attr::{Args, Errors, OnLostArg};

/// Parses the item; anything but a function is an error (with the item's span).
pub(crate) fn read(tokens: TokenStream) -> Result<ItemFn, (syn::Error, TokenStream)> {
    if let Ok(declaration) = syn::parse2::<syn::TraitItemFn>(tokens.clone())
        && declaration.default.is_none()
    {
        return Err((
            syn::Error::new(
                declaration.sig.ident.span(),
                "#[redis_locked] needs a function body: put it on the implementation of this method, not on its declaration",
            ),
            tokens,
        ));
    }
    match syn::parse2::<Item>(tokens.clone()) {
        Ok(Item::Fn(function)) => Ok(function),
        Ok(other) => Err((
            syn::Error::new(
                item_head_span(&other),
                "#[redis_locked] goes on a function (`fn` or `async fn`), not on this item",
            ),
            tokens,
        )),
        Err(error) => Err((error, tokens)),
    }
}

fn item_head_span(item: &Item) -> proc_macro2::Span {
    match item {
        Item::Struct(item) => item.struct_token.span,
        Item::Enum(item) => item.enum_token.span,
        Item::Const(item) => item.const_token.span,
        Item::Static(item) => item.static_token.span,
        Item::Impl(item) => item.impl_token.span,
        Item::Mod(item) => item.mod_token.span,
        Item::Trait(item) => item.trait_token.span,
        Item::Type(item) => item.type_token.span,
        other => other.span(),
    }
}

/// The identifiers bound by the function's arguments (not `self`), in order.
pub(crate) fn bindings(function: &ItemFn) -> Vec<Ident> {
    struct Collect(Vec<Ident>);
    impl<'ast> Visit<'ast> for Collect {
        fn visit_pat_ident(&mut self, pat: &'ast PatIdent) {
            self.0.push(pat.ident.clone());
            syn::visit::visit_pat_ident(self, pat);
        }
    }
    let mut collect = Collect(Vec::new());
    for input in &function.sig.inputs {
        if let FnArg::Typed(typed) = input {
            collect.visit_pat(&typed.pat);
        }
    }
    collect.0
}

/// Checks what depends on both the arguments and the function.
pub(crate) fn check(args: &Args, function: &ItemFn, errors: &mut Errors) {
    if let Some(constness) = &function.sig.constness {
        errors.at(
            constness.span,
            "#[redis_locked] cannot go on a `const fn`: taking a lock talks to Redis at run time; remove `const`",
        );
    }
    let bindings = bindings(function);
    for name in &args.names {
        check_name(name, &bindings, errors);
    }
    if let Some(guard) = &args.guard
        && bindings.iter().any(|binding| binding == guard)
    {
        errors.at(
            guard.span(),
            format!("`guard = {guard}` would shadow the argument `{guard}`; pick another name, e.g. `guard = lock`"),
        );
    }
    if function.sig.asyncness.is_none()
        && let Some((on_lost, span)) = args.on_lost
    {
        let what = match on_lost {
            OnLostArg::Cancel => "cannot be cancelled",
            OnLostArg::Notify => "is always left running",
        };
        errors.at(
            span,
            format!(
                "`on_lost` is for `async fn`s: a sync body {what}; it runs to its end and the call then returns `LockError::Lost`. Remove `on_lost`"
            ),
        );
    }
}

/// Checks the `{binding}` placeholders of the name template.
fn check_name(name: &LitStr, bindings: &[Ident], errors: &mut Errors) {
    let template = name.value();
    let span = name.span();
    let available = if bindings.is_empty() {
        "this function has no arguments to use".to_owned()
    } else {
        format!(
            "available: {}",
            bindings
                .iter()
                .map(|b| format!("`{{{b}}}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '{' => {
                let mut inside = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    inside.push(c);
                }
                if !closed {
                    errors.at(
                        span,
                        "unclosed `{` in `name`; write `{{` for a literal brace",
                    );
                    return;
                }
                // Names are resolved by `format!` itself (arguments, pattern
                // bindings, consts), whose errors point at the placeholder.
                let binding = inside.split(':').next().unwrap_or_default().trim();
                if binding.is_empty() || binding.chars().all(|c| c.is_ascii_digit()) {
                    errors.at(
                        span,
                        format!("`{{{inside}}}` in `name` must name a binding, e.g. `{{id}}` ({available})"),
                    );
                } else if binding.contains('.') || binding.contains('(') {
                    errors.at(
                        span,
                        format!("`{{{binding}}}` in `name` must be a plain binding, not an expression; bind it to an argument first ({available})"),
                    );
                }
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '}' => errors.at(
                span,
                "unmatched `}` in `name`; write `}}` for a literal brace",
            ),
            _ => {}
        }
    }
}
