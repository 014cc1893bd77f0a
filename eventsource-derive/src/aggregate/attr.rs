//! The `#[aggregate(...)]` helper attribute: parsed with every error recorded.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Ident, LitStr, Path, Token, token};

use crate::ctxt::Ctxt;
use crate::symbol::{AGGREGATE, CRATE, EVENT_ENUM, EVENTS, NAME, Symbol};
use crate::value;

const EVENTS_EXAMPLE: &str = "events(AccountOpened, MoneyDeposited)";

/// The arguments of every `#[aggregate(...)]` on the struct, merged. A key is `None`
/// when absent or invalid (the error is recorded).
#[derive(Default)]
pub(crate) struct Attrs {
    /// `name = "..."`.
    pub name: Option<LitStr>,
    /// `events(...)`.
    pub events: Option<EventList>,
    /// `event_enum = Ident`.
    pub event_enum: Option<Ident>,
    /// `crate = "path"`.
    pub krate: Option<Path>,
    /// The keys written, valid or not.
    seen: Vec<Symbol>,
}

/// The types listed in `events(...)`.
pub(crate) struct EventList {
    /// The parentheses, for errors about the whole list.
    pub span: Span,
    /// The types, in order.
    pub paths: Vec<Path>,
}

impl Attrs {
    /// Parses every `#[aggregate(...)]` in `attrs`, recording every error in `cx`.
    pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Attrs {
        let mut out = Attrs::default();
        for attr in attrs.iter().filter(|attr| *attr.path() == AGGREGATE) {
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
        let Some(key) = [NAME, EVENTS, EVENT_ENUM, CRATE]
            .into_iter()
            .find(|key| meta.path == *key)
        else {
            return value::reject_key(cx, meta, "unknown aggregate attribute");
        };
        if self.given(key) {
            return value::reject_key(cx, meta, "duplicate aggregate attribute");
        }
        self.seen.push(key);
        if key == NAME {
            self.name = value::parse(cx, meta, "a string literal", r#"name = "account""#)?;
        } else if key == EVENTS {
            self.events = parse_events(cx, meta)?;
        } else if key == EVENT_ENUM {
            self.event_enum = value::parse(
                cx,
                meta,
                "the name of the enum to generate",
                "event_enum = AccountEvent",
            )?;
        } else {
            self.krate = value::crate_path(cx, meta)?;
        }
        Ok(())
    }
}

/// `events(A, path::B, ...)`; `None` with the errors recorded when any entry is not a
/// type path.
pub(crate) fn parse_events(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<EventList>> {
    if !meta.input.peek(token::Paren) {
        let path = &meta.path;
        let rest = value::take_until_comma(meta.input)?;
        cx.error_spanned_by(quote!(#path #rest), format!("expected `{EVENTS_EXAMPLE}`"));
        return Ok(None);
    }
    let content;
    let paren = syn::parenthesized!(content in meta.input);
    let mut paths = Vec::new();
    let mut valid = true;
    while !content.is_empty() {
        let tokens = value::take_until_comma(&content)?;
        let comma: Option<Token![,]> = content.parse()?;
        if tokens.is_empty() {
            cx.error_spanned_by(comma, "expected an event type before this comma");
            valid = false;
            continue;
        }
        let msg = format!("expected the path of an event type, like `{EVENTS_EXAMPLE}`");
        match value::parse_tokens::<Path>(cx, tokens, msg) {
            Some(path) => paths.push(path),
            None => valid = false,
        }
    }
    Ok(valid.then(|| EventList {
        span: paren.span.join(),
        paths,
    }))
}

#[cfg(test)]
mod tests {
    use syn::{DeriveInput, LitStr, parse_quote};

    use super::Attrs;
    use crate::ctxt::Ctxt;
    use crate::symbol::EVENTS;

    fn parse(input: &DeriveInput) -> (Attrs, Vec<String>) {
        let cx = Ctxt::new();
        let attrs = Attrs::parse(&cx, &input.attrs);
        let errors = cx
            .check()
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        (attrs, errors)
    }

    #[test]
    fn merges_every_aggregate_attribute() {
        let input: DeriveInput = parse_quote! {
            #[aggregate(name = "account", events(Opened, a::b::Deposited<u8>))]
            #[doc = "not ours"]
            #[aggregate(event_enum = Events, crate = "es")]
            struct Account;
        };
        let (attrs, errors) = parse(&input);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            attrs.name.as_ref().map(LitStr::value).as_deref(),
            Some("account")
        );
        assert_eq!(attrs.events.map(|e| e.paths.len()), Some(2));
        assert_eq!(
            attrs.event_enum.map(|i| i.to_string()).as_deref(),
            Some("Events")
        );
        assert_eq!(
            attrs
                .krate
                .map(|p| quote::quote!(#p).to_string())
                .as_deref(),
            Some("es")
        );
    }

    #[test]
    fn reports_every_error_in_one_pass() {
        let input: DeriveInput = parse_quote! {
            #[aggregate(foo, name = 5, event_enum = "x y", events = A)]
            #[aggregate(name = "b", events(A, "B", ,))]
            struct Account;
        };
        let (attrs, errors) = parse(&input);
        assert_eq!(
            errors,
            [
                "unknown aggregate attribute `foo`",
                r#"expected a string literal, like `name = "account"`"#,
                "expected the name of the enum to generate, like `event_enum = AccountEvent`",
                "expected `events(AccountOpened, MoneyDeposited)`",
                "duplicate aggregate attribute `name`",
                "duplicate aggregate attribute `events`",
            ]
        );
        assert!(attrs.given(EVENTS) && attrs.events.is_none());
    }

    #[test]
    fn reports_bad_event_entries() {
        let input: DeriveInput = parse_quote! {
            #[aggregate(events(A, "B", , C))]
            struct Account;
        };
        let (attrs, errors) = parse(&input);
        assert_eq!(
            errors,
            [
                "expected the path of an event type, like `events(AccountOpened, MoneyDeposited)`",
                "expected an event type before this comma",
            ]
        );
        assert!(attrs.events.is_none());
    }
}
