//! `#[event(...)]`: implements `Event` for a struct.
//!
//! [`args`] parses and checks the arguments, [`shape`] fingerprints the struct's JSON
//! shape (and rejects what would make it depend on the build configuration),
//! [`expand`](mod@expand) emits the impl. On an error the struct is given back unchanged
//! with the error (and, when possible, a stub impl from [`expand::fallback`]), so the user
//! sees only the real error.

mod args;
mod expand;
mod shape;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Item, ItemStruct};

use crate::ctxt::Ctxt;

pub(crate) use self::args::Args;

const NOT_A_STRUCT: &str = "#[event] can only be used on a struct";

/// Expands `#[event(args)]` on `input`.
///
/// Argument and item errors come back as `Ok`: the item plus the errors. `Err` only when
/// the item is not something syn can parse.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> syn::Result<TokenStream> {
    let item: Item = syn::parse2(input.clone())?;
    let cx = Ctxt::new();
    let args = Args::parse(&cx, args);
    args.check(&cx);
    let target = target(&cx, &item);
    let shape = target.map(|target| shape::shape(&cx, target));
    match (target, cx.check()) {
        (Some(target), Ok(())) => Ok(expand::event(
            target,
            &args,
            shape.as_deref().unwrap_or_default(),
        )),
        (target, Err(err)) => Ok(expand::fallback(input, target, &args, err)),
        (None, Ok(())) => unreachable!("`target` records an error when it returns `None`"),
    }
}

/// The struct to implement `Event` for, or `None` with an error recorded.
fn target<'a>(cx: &Ctxt, item: &'a Item) -> Option<&'a ItemStruct> {
    let keyword_and_name = match item {
        Item::Struct(item) => {
            let generics = &item.generics;
            if !generics.params.is_empty() {
                cx.error_spanned_by(generics, "#[event] does not support generic structs");
                return None;
            }
            if let Some(where_clause) = &generics.where_clause {
                cx.error_spanned_by(where_clause, "#[event] does not support where clauses");
                return None;
            }
            return Some(item);
        }
        Item::Enum(item) => {
            let (keyword, ident) = (&item.enum_token, &item.ident);
            quote!(#keyword #ident)
        }
        Item::Union(item) => {
            let (keyword, ident) = (&item.union_token, &item.ident);
            quote!(#keyword #ident)
        }
        Item::Fn(item) => {
            let (keyword, ident) = (&item.sig.fn_token, &item.sig.ident);
            quote!(#keyword #ident)
        }
        Item::Type(item) => {
            let (keyword, ident) = (&item.type_token, &item.ident);
            quote!(#keyword #ident)
        }
        Item::Trait(item) => {
            let (keyword, ident) = (&item.trait_token, &item.ident);
            quote!(#keyword #ident)
        }
        Item::Mod(item) => {
            let (keyword, ident) = (&item.mod_token, &item.ident);
            quote!(#keyword #ident)
        }
        Item::Impl(item) => {
            let (keyword, self_ty) = (&item.impl_token, &item.self_ty);
            quote!(#keyword #self_ty)
        }
        other => quote!(#other),
    };
    cx.error_spanned_by(keyword_and_name, NOT_A_STRUCT);
    None
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::expand;

    fn expand_to_string(args: proc_macro2::TokenStream, input: proc_macro2::TokenStream) -> String {
        expand(args, input)
            .expect("the input is a valid item")
            .to_string()
    }

    #[test]
    fn implements_event_with_defaults() {
        let out = expand_to_string(
            quote!(),
            quote!(
                struct Opened;
            ),
        );
        assert!(out.starts_with("struct Opened ;"), "{out}");
        assert!(
            out.contains("impl :: eventsource :: Event for Opened"),
            "{out}"
        );
        assert!(out.contains("const NAME : & 'static :: core :: primitive :: str = \"Opened\""));
        assert!(out.contains("const VERSION : :: core :: primitive :: u32 = 1"));
        assert!(!out.contains("decode_version"), "{out}");
    }

    #[test]
    fn upcasting_overrides_decode_version() {
        let out = expand_to_string(
            quote!(
                name = "opened",
                version = 2,
                upcast_from = v1::Opened,
                crate = "es"
            ),
            quote!(
                struct Opened {
                    a: u8,
                }
            ),
        );
        assert!(out.contains("impl es :: Event for Opened"), "{out}");
        assert!(out.contains("fn decode_version"), "{out}");
        assert!(
            out.contains("const SHAPE : & 'static :: core :: primitive :: str = \"{a: u8}\""),
            "{out}"
        );
        assert!(
            out.contains(
                "es :: __private :: prepend_history :: < { < v1 :: Opened as es :: Event > :: \
                 HISTORY . len () + 1 } > (es :: EventShape :: of :: < Self > ()"
            ),
            "{out}"
        );
        assert!(
            out.contains("< v1 :: Opened as es :: Event > :: VERSION < 2"),
            "{out}"
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn gives_the_item_back_with_the_errors() {
        let item = quote! {
            enum Opened {
                A,
            }
        };
        let out = expand_to_string(quote!(version = 0, foo = 1), item.clone());
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(out.contains("event versions start at 1"), "{out}");
        assert!(out.contains("unknown event attribute `foo`"), "{out}");
        assert!(out.contains("can only be used on a struct"), "{out}");
        assert!(!out.contains("impl"), "{out}");
    }

    #[test]
    fn rejects_generic_structs() {
        let out = expand_to_string(
            quote!(),
            quote!(
                struct Opened<T>(T);
            ),
        );
        assert!(out.contains("does not support generic structs"), "{out}");
    }

    #[test]
    fn a_stub_impl_keeps_other_code_compiling() {
        let out = expand_to_string(
            quote!(version = "2"),
            quote!(
                struct Opened;
            ),
        );
        assert!(out.contains("compile_error"), "{out}");
        assert!(
            out.contains("impl :: eventsource :: Event for Opened"),
            "{out}"
        );
    }
}
