//! What the macros emit next to an error so the rest of the user's crate still compiles
//! and only the real error is reported (after thiserror's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemStruct;

use crate::aggregate::Aggregate;
use crate::event::Args;

/// The error, an event enum without variants and an `Aggregate` impl that uses it, so
/// code naming the aggregate or its event enum does not fail a second time.
pub(crate) fn aggregate(aggregate: &Aggregate, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    let krate = aggregate.krate();
    let ident = aggregate.ident();
    let vis = aggregate.vis();
    let name = aggregate.name();
    let mut enum_ident = aggregate.event_enum();
    if enum_ident == *ident {
        enum_ident = quote::format_ident!("{}Event", ident);
    }
    let doc = format!("The events of the [`{ident}`] aggregate (none: see the error).");
    quote! {
        #error

        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
        #vis enum #enum_ident {}

        #[automatically_derived]
        #[allow(unused_qualifications)]
        impl #krate::EventSet for #enum_ident {
            const TYPES: &'static [#krate::EventType] = &[];
            const HISTORIES: &'static [&'static [#krate::EventSchema]] = &[];

            fn event_type(&self) -> #krate::EventType {
                match *self {}
            }

            fn encode(
                &self,
            ) -> ::core::result::Result<
                ::std::string::String,
                #krate::__private::serde_json::Error,
            > {
                match *self {}
            }

            fn decode(
                _: &::core::primitive::str,
                _: ::core::primitive::u32,
                _: #krate::Payload<'_>,
            ) -> ::core::result::Result<Self, #krate::DecodeFailure> {
                ::core::result::Result::Err(#krate::DecodeFailure::UnknownType)
            }
        }

        #[automatically_derived]
        #[allow(unused_qualifications)]
        impl #krate::Aggregate for #ident
        where
            // The supertraits as a bound, so a struct that also lacks them gets no second
            // error here; `for<'__es>` because trivial bounds are unstable
            // (rust-lang/rust#48214).
            for<'__es> #ident: ::core::default::Default + ::core::marker::Send,
        {
            const NAME: &'static ::core::primitive::str = #name;
            type Event = #enum_ident;

            fn apply_event(&mut self, __es_event: &Self::Event) {
                match *__es_event {}
            }
        }
    }
}

/// The user's item unchanged, the error and, when the item is a struct we can implement
/// `Event` for, an impl with the name and version given (or their defaults) and an empty
/// shape.
pub(crate) fn event(
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
                const SCHEMA: &'static ::core::primitive::str = "";
            }
        }
    });
    let mut out = item;
    out.extend([error]);
    out.extend(stub);
    out
}
