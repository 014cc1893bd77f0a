//! Checks of an [`Aggregate`] that need more than one key or the struct itself.

use super::ast::Aggregate;
use crate::ctxt::Ctxt;
use crate::symbol::{EVENTS, NAME};
use crate::value::display_tokens;

impl Aggregate<'_> {
    /// Records every problem: missing or empty `events`, an event listed twice, two
    /// events that would get the same variant, a missing or empty name, an enum name
    /// that clashes.
    pub(crate) fn validate(&self, cx: &Ctxt) {
        self.check_events(cx);
        // No default from the struct's name: renaming the struct would silently start new,
        // empty streams beside the stored ones.
        if !self.attrs.given(NAME) {
            cx.error_spanned_by(
                self.ident(),
                "#[aggregate(name = \"...\")] is required: the name is stored with every \
                 event, and renaming the struct must not start new, empty streams",
            );
        }
        if let Some(name) = self
            .attrs
            .name
            .as_ref()
            .filter(|name| name.value().is_empty())
        {
            cx.error_spanned_by(name, "the aggregate name must not be empty");
        }
        let enum_ident = self.event_enum();
        if enum_ident == *self.ident() {
            cx.error_spanned_by(
                &enum_ident,
                "the event enum needs a name other than the aggregate's",
            );
        }
    }

    fn check_events(&self, cx: &Ctxt) {
        let Some(list) = &self.attrs.events else {
            if !self.attrs.given(EVENTS) {
                cx.error_spanned_by(
                    self.ident(),
                    "#[aggregate(events(...))] is required: list the aggregate's event types",
                );
            }
            return;
        };
        if list.paths.is_empty() {
            cx.syn_error(syn::Error::new(
                list.span,
                "`events()` is empty: list the aggregate's event types",
            ));
            return;
        }
        let enum_ident = self.event_enum();
        let events = self.events();
        for (i, event) in events.iter().enumerate() {
            let shown = display_tokens(event.path);
            let earlier = events[..i]
                .iter()
                .find(|other| other.variant == event.variant);
            if let Some(earlier) = earlier {
                let message = if display_tokens(earlier.path) == shown {
                    format!("event `{shown}` is listed twice")
                } else {
                    format!(
                        "events `{}` and `{shown}` would both be the variant `{}` of \
                         `{enum_ident}`: give the event types distinct names",
                        display_tokens(earlier.path),
                        event.variant,
                    )
                };
                cx.error_spanned_by(event.path, message);
            } else if event.path.segments.len() == 1 && *event.variant == enum_ident {
                cx.error_spanned_by(
                    event.path,
                    format!(
                        "event `{shown}` has the name of the generated event enum: set \
                         `event_enum = ...` to another name"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::{DeriveInput, parse_quote};

    use super::Aggregate;
    use crate::ctxt::Ctxt;

    fn errors(input: &DeriveInput) -> Vec<String> {
        let cx = Ctxt::new();
        Aggregate::from_syn(&cx, input).validate(&cx);
        cx.check()
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn accepts_a_valid_aggregate() {
        let input = parse_quote! {
            #[aggregate(name = "account", events(Opened, a::Deposited))]
            struct Account;
        };
        assert!(errors(&input).is_empty());
    }

    #[test]
    fn requires_a_name() {
        let input = parse_quote! {
            #[aggregate(events(Opened))]
            struct Account;
        };
        assert_eq!(
            errors(&input),
            [
                "#[aggregate(name = \"...\")] is required: the name is stored with every event, \
                 and renaming the struct must not start new, empty streams"
            ]
        );
        // A name given with a wrong value is reported once, at the value.
        let input = parse_quote! {
            #[aggregate(name = account, events(Opened))]
            struct Account;
        };
        assert_eq!(
            errors(&input),
            [r#"expected a string literal, like `name = "account"`"#]
        );
    }

    #[test]
    fn requires_events() {
        let input = parse_quote!(
            #[aggregate(name = "account")]
            struct Account;
        );
        assert_eq!(
            errors(&input),
            ["#[aggregate(events(...))] is required: list the aggregate's event types"]
        );
        let input = parse_quote! { #[aggregate(name = "account", events())] struct Account; };
        assert_eq!(
            errors(&input),
            ["`events()` is empty: list the aggregate's event types"]
        );
    }

    #[test]
    fn rejects_repeated_events_and_variant_clashes() {
        let input = parse_quote! {
            #[aggregate(name = "", events(Opened, a::Closed, Opened, b::Closed, AccountEvent))]
            struct Account;
        };
        assert_eq!(
            errors(&input),
            [
                "event `Opened` is listed twice",
                "events `a::Closed` and `b::Closed` would both be the variant `Closed` of \
                 `AccountEvent`: give the event types distinct names",
                "event `AccountEvent` has the name of the generated event enum: set \
                 `event_enum = ...` to another name",
                "the aggregate name must not be empty",
            ]
        );
    }

    #[test]
    fn rejects_enums_unions_and_generics() {
        let input = parse_quote! { #[aggregate(name = "a", events(A))] enum Account { A } };
        assert_eq!(
            errors(&input),
            ["#[derive(Aggregate)] can only be used on a struct"]
        );
        let input = parse_quote! { #[aggregate(name = "a", events(A))] struct Account<T>(T); };
        assert_eq!(
            errors(&input),
            ["#[derive(Aggregate)] does not support generic structs"]
        );
        let input = parse_quote! {
            #[aggregate(name = "a", events(A), event_enum = Account)]
            struct Account;
        };
        assert_eq!(
            errors(&input),
            ["the event enum needs a name other than the aggregate's"]
        );
    }
}
