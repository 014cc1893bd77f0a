//! The code `#[derive(Projection)]` emits: the `Projection` impl, or a stub beside the
//! errors.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;

use super::attr::Attrs;
use crate::respan::span_range;
use crate::value;

/// The `Projection` impl of a valid projection.
pub(crate) fn derive(input: &DeriveInput, attrs: &Attrs, version: u32) -> TokenStream {
    let krate = attrs.krate();
    let ident = &input.ident;
    let name = value::name(attrs.name.as_ref(), ident);
    let version = proc_macro2::Literal::u32_unsuffixed(version);
    let paths: Vec<_> = attrs.events.iter().flat_map(|list| &list.paths).collect();
    // Each call at its event's path in `events(...)`: a missing `Project` impl (or a
    // type that is not an `#[event]`) is reported there.
    let dispatch = paths.iter().map(|path| {
        let (_, last) = span_range(path);
        let call = quote_spanned!(last=> #krate::__private::project_as::<Self, #path>);
        quote! {
            if let ::core::option::Option::Some(__es_done) = #call(self, __es_ctx, &mut __es_known) {
                return __es_done;
            }
        }
    });
    let reset = attrs.reset.as_ref().map(|path| {
        quote! {
            fn reset(&mut self, __es_ctx: &mut #krate::Context<'_>) -> #krate::HandlerResult {
                #path(self, __es_ctx)
            }
        }
    });
    quote! {
        #[automatically_derived]
        #[allow(unused_qualifications)]
        impl #krate::Projection for #ident {
            const NAME: &'static ::core::primitive::str = #name;
            const VERSION: ::core::primitive::u32 = #version;

            fn event_types() -> ::std::vec::Vec<&'static ::core::primitive::str> {
                let mut __es_types = ::std::vec::Vec::new();
                #(
                    for __es_shape in <#paths as #krate::Event>::HISTORY {
                        if !__es_types.contains(&__es_shape.name) {
                            __es_types.push(__es_shape.name);
                        }
                    }
                )*
                __es_types
            }

            fn handle(
                &mut self,
                __es_ctx: &mut #krate::Context<'_>,
            ) -> ::core::result::Result<(), #krate::HandleError> {
                let mut __es_known = ::core::option::Option::None;
                #(#dispatch)*
                #krate::__private::not_projected(__es_known)
            }

            #reset
        }
    }
}

/// The error and a `Projection` impl that handles nothing, so code naming the
/// projection does not fail a second time.
pub(crate) fn fallback(input: &DeriveInput, attrs: &Attrs, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    let krate = attrs.krate();
    let ident = &input.ident;
    let name = value::name(attrs.name.as_ref(), ident);
    quote! {
        #error

        #[automatically_derived]
        impl #krate::Projection for #ident {
            const NAME: &'static ::core::primitive::str = #name;
            const VERSION: ::core::primitive::u32 = 1;

            fn event_types() -> ::std::vec::Vec<&'static ::core::primitive::str> {
                ::std::vec::Vec::new()
            }

            fn handle(
                &mut self,
                _: &mut #krate::Context<'_>,
            ) -> ::core::result::Result<(), #krate::HandleError> {
                #krate::__private::not_projected(::core::option::Option::None)
            }
        }
    }
}
