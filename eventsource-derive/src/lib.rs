//! Procedural macros for [`eventsource`](https://docs.rs/eventsource): the `#[event]`
//! attribute, `#[derive(Aggregate)]` and `#[derive(Projection)]`.
//!
//! Use them through the runtime crate, which re-exports both (`eventsource::event`,
//! `eventsource::Aggregate`); the generated code refers to the runtime by absolute path
//! (`::eventsource` by default, or the path given with `crate = "..."`).

mod aggregate;
mod ctxt;
mod event;
mod projection;
mod respan;
mod symbol;
mod value;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `eventsource::Event` for a struct.
///
/// Arguments, all optional: `name = "account.opened"` (default: the struct's name),
/// `version = 2` (default 1), `upcast_from = OldStruct` (with `From<OldStruct>`, decodes
/// older versions through `OldStruct`; needs `version` of 2 or more) and
/// `crate = "path"` (the runtime crate's path, default `::eventsource`).
#[proc_macro_attribute]
pub fn event(args: TokenStream, input: TokenStream) -> TokenStream {
    event::expand(args.into(), input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `eventsource::Aggregate` for a struct and generates its event enum.
///
/// `#[aggregate(name = "account", events(A, B, ...))]`: both are required. The name is
/// stored with every event, so it is never taken from the struct's name: renaming the
/// struct must not start new, empty streams. Optional: `event_enum = AccountEvent`
/// (default: the struct's name followed by `Event`) and `crate = "path"` (default
/// `::eventsource`).
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `eventsource::Projection` for a struct, dispatching each listed event type
/// to its `eventsource::Project` impl.
///
/// `#[projection(events(A, B, ...))]` is required. Optional: `name = "balances"`
/// (default: the struct's name), `version = 2` (default 1; a new version rebuilds the
/// read model), `reset = Self::clear` (a function `fn(&mut Self, &mut Context<'_>) ->
/// HandlerResult` that clears the read model before a rebuild) and `crate = "path"`.
#[proc_macro_derive(Projection, attributes(projection))]
pub fn derive_projection(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    projection::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
