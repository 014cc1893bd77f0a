//! The `Event` impl `#[event]` emits for a valid struct, and the stub it emits next to an
//! error ([`fallback`]).

use proc_macro2::{Delimiter, Group, Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Ident, ItemStruct, Path};

use super::Args;
use crate::respan::{respan, span_range};
use crate::value::{display_tokens, format_literal};

/// The struct unchanged, its `Event` impl with the fingerprint `shape` and, with
/// `upcast_from`, the history and compile-time checks of the previous version.
pub(crate) fn event(item: &ItemStruct, args: &Args, shape: &str) -> TokenStream {
    let krate = args.krate();
    let ident = &item.ident;
    let name = args.name(ident);
    let version = args.version_literal();
    let (decode, checks) = match &args.upcast_from {
        Some(old) => upcast(&krate, ident, args.version(), old),
        None => (TokenStream::new(), TokenStream::new()),
    };
    quote! {
        #item

        #[automatically_derived]
        #[allow(unused_qualifications)]
        impl #krate::Event for #ident {
            const NAME: &'static ::core::primitive::str = #name;
            const VERSION: ::core::primitive::u32 = #version;
            const SHAPE: &'static ::core::primitive::str = #shape;
            #decode
        }

        #checks
    }
}

/// What `#[event]` emits when it has errors (after thiserror's `fallback.rs`): the
/// user's item unchanged, the error and, when the item is a struct we can implement
/// `Event` for, an impl with the name and version given (or their defaults) and an empty
/// shape.
pub(crate) fn fallback(
    item: TokenStream,
    target: Option<&ItemStruct>,
    args: &Args,
    error: syn::Error,
) -> TokenStream {
    let error = error.into_compile_error();
    let stub = target.map(|target| {
        let krate = args.krate();
        let ident = &target.ident;
        let name = args.name(ident);
        let version = args.version_literal();
        quote! {
            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #krate::Event for #ident {
                const NAME: &'static ::core::primitive::str = #name;
                const VERSION: ::core::primitive::u32 = #version;
                const SHAPE: &'static ::core::primitive::str = "";
            }
        }
    });
    let mut out = item;
    out.extend([error]);
    out.extend(stub);
    out
}

/// `decode_version` through `old`, the history (this version, then `old`'s), and the
/// check that `old` has a lower version.
///
/// What can fail to type-check is spanned at the `upcast_from` value, so a missing
/// `From<Old>` impl or an `Old` that is not an event is reported at the attribute.
fn upcast(
    krate: &TokenStream,
    ident: &Ident,
    version: u32,
    old: &Path,
) -> (TokenStream, TokenStream) {
    let (first, last) = span_range(old);
    let old_krate = respan(krate, first);
    // rustc reports an unmet `New: From<Old>` at `New`: put it at the last token of the
    // old type's path.
    let new = respan(ident, last);
    let version_lit = Literal::u32_unsuffixed(version);
    let from = {
        let head = quote_spanned!(first=> <#new as ::core::convert::From<);
        let tail = quote_spanned!(last=> >>::from);
        quote!(#head #old #tail)
    };
    let decode_old = {
        let head = quote_spanned!(first=> <);
        let tail = quote_spanned!(last=> as #old_krate::Event>::decode_version);
        quote!(#head #old #tail)
    };
    let history = {
        let head = quote_spanned!(first=> <);
        let tail = quote_spanned!(last=> as #old_krate::Event>::HISTORY);
        quote!(#head #old #tail)
    };
    let decode = quote! {
        const HISTORY: &'static [#krate::EventShape] =
            &#krate::__private::prepend_history::<{ #history.len() + 1 }>(
                #krate::EventShape::of::<Self>(),
                #history,
            );

        fn decode_version(
            __es_version: ::core::primitive::u32,
            __es_payload: #krate::Payload<'_>,
        ) -> ::core::result::Result<Self, #krate::DecodeFailure> {
            const __ES_UPCAST: fn(#old) -> #ident = #from;
            if __es_version == #version_lit {
                #krate::Payload::deserialize(__es_payload)
            } else if __es_version > #version_lit {
                ::core::result::Result::Err(#krate::DecodeFailure::UnsupportedVersion {
                    current: #version_lit,
                })
            } else {
                ::core::result::Result::map(#decode_old(__es_version, __es_payload), __ES_UPCAST)
            }
        }
    };
    let old_shown = display_tokens(old);
    let message = format_literal(&format!(
        "`{ident}` upcasts from `{old_shown}`, so the version of `{old_shown}` must be \
         lower than {version}"
    ));
    let assert = quote_spanned!(first=> ::core::assert!);
    let mut args = Group::new(
        Delimiter::Parenthesis,
        quote_spanned!(first=> <#old as #old_krate::Event>::VERSION < #version_lit, #message),
    );
    args.set_span(last);
    let checks = quote! {
        #[allow(unused_qualifications)]
        const _: () = #assert #args;
    };
    (decode, checks)
}
