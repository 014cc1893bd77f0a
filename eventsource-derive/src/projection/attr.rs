//! The `#[projection(...)]` helper attribute: parsed with every error recorded.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, ExprPath, LitInt, LitStr, Path};

use crate::aggregate::attr::{EventList, parse_events};
use crate::ctxt::Ctxt;
use crate::symbol::{CRATE, EVENTS, NAME, PROJECTION, RESET, Symbol, VERSION};
use crate::value;

/// The arguments of every `#[projection(...)]` on the struct, merged. A key is `None`
/// when absent or invalid (the error is recorded).
#[derive(Default)]
pub(crate) struct Attrs {
    /// `name = "..."`.
    pub name: Option<LitStr>,
    /// `version = N`.
    pub version: Option<LitInt>,
    /// `events(...)`.
    pub events: Option<EventList>,
    /// `reset = path`.
    pub reset: Option<ExprPath>,
    /// `crate = "path"`.
    pub krate: Option<Path>,
    /// The keys written, valid or not.
    seen: Vec<Symbol>,
}

impl Attrs {
    /// Parses every `#[projection(...)]` in `attrs`, recording every error in `cx`.
    pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Attrs {
        let mut out = Attrs::default();
        for attr in attrs.iter().filter(|attr| *attr.path() == PROJECTION) {
            if let Err(err) = attr.parse_nested_meta(|meta| out.parse_key(cx, &meta)) {
                cx.syn_error(err);
            }
        }
        out
    }

    /// Whether `key` was written (even with an invalid value).
    pub(crate) fn given(&self, key: Symbol) -> bool {
        self.seen.contains(&key)
    }

    /// The path of the runtime crate.
    pub(crate) fn krate(&self) -> TokenStream {
        value::krate(self.krate.as_ref())
    }

    fn parse_key(&mut self, cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<()> {
        let Some(key) = [NAME, VERSION, EVENTS, RESET, CRATE]
            .into_iter()
            .find(|key| meta.path == *key)
        else {
            return value::reject_key(cx, meta, "unknown projection attribute");
        };
        if self.given(key) {
            return value::reject_key(cx, meta, "duplicate projection attribute");
        }
        self.seen.push(key);
        if key == NAME {
            self.name = value::parse(cx, meta, "a string literal", r#"name = "balances""#)?;
        } else if key == VERSION {
            self.version = value::parse(cx, meta, "an integer literal", "version = 2")?;
        } else if key == EVENTS {
            self.events = parse_events(cx, meta)?;
        } else if key == RESET {
            self.reset = value::parse(
                cx,
                meta,
                "the path of a function `fn(&mut Self, &mut Context<'_>) -> HandlerResult`",
                "reset = Self::clear",
            )?;
        } else {
            self.krate = value::crate_path(cx, meta)?;
        }
        Ok(())
    }
}
