//! `#[derive(Projection)]`: implements `Projection` for a struct, dispatching each listed
//! event type to its `Project` impl.
//!
//! [`attr`] parses the attribute, [`validate`] checks it, [`expand`](mod@expand) emits
//! the code. On an error in the attribute the derive emits the error and an impl that
//! handles nothing, so the rest of the crate still compiles.

mod attr;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput};

use self::attr::Attrs;
use crate::ctxt::Ctxt;
use crate::symbol::EVENTS;
use crate::value::display_tokens;

/// Expands `#[derive(Projection)]` on `input`.
///
/// # Errors
/// Every problem found, combined, when the input is not a struct without generics.
pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let supported = check_shape(&cx, input);
    let attrs = Attrs::parse(&cx, &input.attrs);
    let version = validate(&cx, input, &attrs);
    match cx.check() {
        Ok(()) => Ok(expand::derive(input, &attrs, version)),
        Err(err) if supported => Ok(expand::fallback(input, &attrs, err)),
        Err(err) => Err(err),
    }
}

/// Records an error unless `input` is a struct without generics.
fn check_shape(cx: &Ctxt, input: &DeriveInput) -> bool {
    let ident = &input.ident;
    match &input.data {
        Data::Struct(_)
            if input.generics.params.is_empty() && input.generics.where_clause.is_none() =>
        {
            true
        }
        Data::Struct(_) => {
            cx.error_spanned_by(
                &input.generics,
                "#[derive(Projection)] does not support generic structs",
            );
            false
        }
        Data::Enum(data) => {
            let keyword = &data.enum_token;
            cx.error_spanned_by(
                quote!(#keyword #ident),
                "#[derive(Projection)] can only be used on a struct",
            );
            false
        }
        Data::Union(data) => {
            let keyword = &data.union_token;
            cx.error_spanned_by(
                quote!(#keyword #ident),
                "#[derive(Projection)] can only be used on a struct",
            );
            false
        }
    }
}

/// Records every problem of the arguments; returns the version (1 when absent or
/// invalid).
fn validate(cx: &Ctxt, input: &DeriveInput, attrs: &Attrs) -> u32 {
    if let Some(name) = attrs.name.as_ref().filter(|name| name.value().is_empty()) {
        cx.error_spanned_by(name, "the projection name must not be empty");
    }
    let mut version = 1;
    if let Some(lit) = &attrs.version {
        match lit.base10_parse::<u32>() {
            Ok(0) => cx.error_spanned_by(lit, "projection versions start at 1"),
            Ok(v) => version = v,
            Err(_) => cx.error_spanned_by(lit, "the projection version must fit in a `u32`"),
        }
    }
    match &attrs.events {
        None if !attrs.given(EVENTS) => cx.error_spanned_by(
            &input.ident,
            "#[projection(events(...))] is required: list the event types the projection handles",
        ),
        None => {}
        Some(list) if list.paths.is_empty() => cx.syn_error(syn::Error::new(
            list.span,
            "`events()` is empty: list the event types the projection handles",
        )),
        Some(list) => {
            for (i, path) in list.paths.iter().enumerate() {
                let shown = display_tokens(path);
                if list.paths[..i].iter().any(|p| display_tokens(p) == shown) {
                    cx.error_spanned_by(path, format!("event `{shown}` is listed twice"));
                }
            }
        }
    }
    version
}

#[cfg(test)]
mod tests {
    use syn::{DeriveInput, parse_quote};

    use super::expand;

    #[test]
    fn expands_a_valid_projection() -> syn::Result<()> {
        let input: DeriveInput = parse_quote! {
            #[projection(name = "balances", version = 3, events(Opened, money::Deposited), reset = Self::clear)]
            pub struct Balances;
        };
        let out = expand(&input)?.to_string();
        for expected in [
            "impl :: eventsource :: Projection for Balances",
            "const NAME : & 'static :: core :: primitive :: str = \"balances\"",
            "const VERSION : :: core :: primitive :: u32 = 3",
            "project_as :: < Self , money :: Deposited >",
            "< Opened as :: eventsource :: Event > :: HISTORY",
            "Self :: clear (self , __es_ctx)",
        ] {
            assert!(out.contains(expected), "missing `{expected}` in {out}");
        }
        assert!(!out.contains("compile_error"), "{out}");
        Ok(())
    }

    #[test]
    fn reports_every_error_with_a_stub() -> syn::Result<()> {
        let input: DeriveInput = parse_quote! {
            #[projection(name = "", version = 0, events(A, A), foo)]
            struct Balances;
        };
        let out = expand(&input)?.to_string();
        for expected in [
            "unknown projection attribute `foo`",
            "the projection name must not be empty",
            "projection versions start at 1",
            "event `A` is listed twice",
            "impl :: eventsource :: Projection for Balances",
        ] {
            assert!(out.contains(expected), "missing `{expected}` in {out}");
        }
        Ok(())
    }

    #[test]
    fn requires_a_struct_and_events() {
        let input: DeriveInput = parse_quote! { enum Balances { A } };
        let messages: Vec<String> = expand(&input)
            .err()
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            messages,
            [
                "#[derive(Projection)] can only be used on a struct",
                "#[projection(events(...))] is required: list the event types the projection handles",
            ]
        );
    }
}
