//! Our model of the input of `#[derive(Aggregate)]`: the struct and its attribute,
//! keeping a reference to the user's tokens for spans.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ext::IdentExt as _;
use syn::{Data, DeriveInput, Ident, Path, Visibility};

use super::attr::Attrs;
use crate::ctxt::Ctxt;
use crate::value;

/// A struct deriving `Aggregate`.
pub(crate) struct Aggregate<'a> {
    /// The user's input.
    pub original: &'a DeriveInput,
    /// Its `#[aggregate(...)]` arguments.
    pub attrs: Attrs,
    /// Whether the input is a struct without generics, the only shape we implement for.
    pub supported: bool,
}

/// One event type of the aggregate.
pub(crate) struct Event<'a> {
    /// The type, as written in `events(...)`.
    pub path: &'a Path,
    /// Its variant in the event enum: the type's last path segment.
    pub variant: &'a Ident,
    /// The hidden type alias the generated code names the type by, spanned at the
    /// type's name: `path` is resolved only in that alias, so a misspelled path is
    /// reported once.
    pub alias: Ident,
}

impl<'a> Aggregate<'a> {
    /// Builds the model, recording in `cx` the attribute errors and an unsupported shape.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let supported = check_shape(cx, input);
        Aggregate {
            original: input,
            attrs: Attrs::parse(cx, &input.attrs),
            supported,
        }
    }

    /// The struct's name.
    pub(crate) fn ident(&self) -> &'a Ident {
        &self.original.ident
    }

    /// The struct's visibility, given to the event enum.
    pub(crate) fn vis(&self) -> &'a Visibility {
        &self.original.vis
    }

    /// The path of the runtime crate.
    pub(crate) fn krate(&self) -> TokenStream {
        self.attrs.krate()
    }

    /// The aggregate's stable name as a string literal: the `name` argument, or the
    /// struct's name in the stub emitted beside an error (`name` is required).
    pub(crate) fn name(&self) -> TokenStream {
        value::name(self.attrs.name.as_ref(), self.ident())
    }

    /// The event enum's name: the `event_enum` argument, or `{Struct}Event`.
    pub(crate) fn event_enum(&self) -> Ident {
        self.attrs
            .event_enum
            .clone()
            .unwrap_or_else(|| format_ident!("{}Event", self.ident().unraw()))
    }

    /// The events listed in `events(...)`, in order; empty when missing or invalid.
    pub(crate) fn events(&self) -> Vec<Event<'_>> {
        self.attrs
            .events
            .iter()
            .flat_map(|list| &list.paths)
            .enumerate()
            .filter_map(|(index, path)| {
                let variant = &path.segments.last()?.ident;
                let alias = Ident::new(
                    &format!("__es_{}_{index}", self.event_enum().unraw()),
                    variant.span(),
                );
                Some(Event {
                    path,
                    variant,
                    alias,
                })
            })
            .collect()
    }
}

/// Records an error unless `input` is a struct without generics.
fn check_shape(cx: &Ctxt, input: &DeriveInput) -> bool {
    let ident = &input.ident;
    let keyword = match &input.data {
        Data::Struct(_) => {
            let generics = &input.generics;
            if !generics.params.is_empty() {
                cx.error_spanned_by(
                    generics,
                    "#[derive(Aggregate)] does not support generic structs",
                );
                return false;
            }
            if let Some(where_clause) = &generics.where_clause {
                cx.error_spanned_by(
                    where_clause,
                    "#[derive(Aggregate)] does not support where clauses",
                );
                return false;
            }
            return true;
        }
        Data::Enum(data) => {
            let keyword = &data.enum_token;
            quote!(#keyword #ident)
        }
        Data::Union(data) => {
            let keyword = &data.union_token;
            quote!(#keyword #ident)
        }
    };
    cx.error_spanned_by(keyword, "#[derive(Aggregate)] can only be used on a struct");
    false
}
