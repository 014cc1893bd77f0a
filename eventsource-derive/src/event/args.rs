//! The arguments of `#[event(...)]`: parsed with every error recorded, then checked
//! against each other.

use proc_macro2::{Literal, TokenStream};
use syn::parse::Parser as _;
use syn::{Ident, LitInt, LitStr, Path};

use crate::ctxt::Ctxt;
use crate::symbol::{CRATE, NAME, Symbol, UPCAST_FROM, VERSION};
use crate::value;

/// The parsed arguments; a key is `None` when absent or invalid (the error is recorded).
#[derive(Default)]
pub(crate) struct Args {
    /// `name = "..."`.
    pub name: Option<LitStr>,
    /// `version = N`, as written (checked to be a `u32` of at least 1 by [`Args::check`]).
    pub version: Option<LitInt>,
    /// `upcast_from = OldType`.
    pub upcast_from: Option<Path>,
    /// `crate = "path"`.
    pub krate: Option<Path>,
}

impl Args {
    /// Parses the attribute's arguments, recording every error in `cx`.
    pub(crate) fn parse(cx: &Ctxt, args: TokenStream) -> Args {
        let mut out = Args::default();
        let mut seen: Vec<Symbol> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let Some(key) = [NAME, VERSION, UPCAST_FROM, CRATE]
                .into_iter()
                .find(|key| meta.path == *key)
            else {
                return value::reject_key(cx, &meta, "unknown event attribute");
            };
            if seen.contains(&key) {
                return value::reject_key(cx, &meta, "duplicate event attribute");
            }
            seen.push(key);
            if key == NAME {
                out.name =
                    value::parse(cx, &meta, "a string literal", r#"name = "account.opened""#)?;
            } else if key == VERSION {
                out.version = value::parse(cx, &meta, "an integer literal", "version = 2")?;
            } else if key == UPCAST_FROM {
                out.upcast_from = value::parse(
                    cx,
                    &meta,
                    "the path of the previous version's type",
                    "upcast_from = AccountOpenedV1",
                )?;
            } else {
                out.krate = value::crate_path(cx, &meta)?;
            }
            Ok(())
        });
        if let Err(err) = parser.parse2(args) {
            cx.syn_error(err);
        }
        out
    }

    /// Checks the values: a non-empty name, a version of at least 1 that fits a `u32`,
    /// and `upcast_from` only with a version of 2 or more.
    pub(crate) fn check(&self, cx: &Ctxt) {
        if let Some(name) = self.name.as_ref().filter(|name| name.value().is_empty()) {
            cx.error_spanned_by(name, "the event name must not be empty");
        }
        let version = match &self.version {
            None => Some(1),
            Some(lit) => match lit.base10_parse::<u32>() {
                Ok(0) => {
                    cx.error_spanned_by(lit, "event versions start at 1");
                    None
                }
                Ok(version) => Some(version),
                Err(_) => {
                    cx.error_spanned_by(lit, "the event version must fit in a `u32`");
                    None
                }
            },
        };
        if let (Some(old), Some(1)) = (&self.upcast_from, version) {
            cx.error_spanned_by(
                old,
                "`upcast_from` needs `version = 2` or higher: the previous version's type \
                 must have a lower version",
            );
        }
    }

    /// The path of the runtime crate.
    pub(crate) fn krate(&self) -> TokenStream {
        value::krate(self.krate.as_ref())
    }

    /// The event's name as a string literal: the `name` argument, or the struct's name.
    pub(crate) fn name(&self, ident: &Ident) -> TokenStream {
        value::name(self.name.as_ref(), ident)
    }

    /// The version, or 1 when absent or invalid.
    pub(crate) fn version(&self) -> u32 {
        self.version
            .as_ref()
            .and_then(|lit| lit.base10_parse().ok())
            .filter(|&version| version > 0)
            .unwrap_or(1)
    }

    /// The version as an unsuffixed literal for the generated code.
    pub(crate) fn version_literal(&self) -> Literal {
        Literal::u32_unsuffixed(self.version())
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use syn::LitStr;

    use super::Args;
    use crate::ctxt::Ctxt;

    fn errors(args: proc_macro2::TokenStream) -> Vec<String> {
        let cx = Ctxt::new();
        Args::parse(&cx, args).check(&cx);
        cx.check()
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn parses_every_key() {
        let cx = Ctxt::new();
        let args = Args::parse(
            &cx,
            quote!(name = "a.b", version = 3, upcast_from = v2::A, crate = "es"),
        );
        args.check(&cx);
        assert!(cx.check().is_ok());
        assert_eq!(
            args.name.as_ref().map(LitStr::value).as_deref(),
            Some("a.b")
        );
        assert_eq!(
            args.version.as_ref().map(ToString::to_string).as_deref(),
            Some("3")
        );
        assert!(args.upcast_from.is_some());
        assert_eq!(args.krate().to_string(), "es");
    }

    #[test]
    fn reports_every_error_in_one_pass() {
        assert_eq!(
            errors(quote!(
                foo = 1,
                name = 5,
                name = "x",
                version = "2",
                bar(1, 2)
            )),
            [
                "unknown event attribute `foo`",
                r#"expected a string literal, like `name = "account.opened"`"#,
                "duplicate event attribute `name`",
                "expected an integer literal, like `version = 2`",
                "unknown event attribute `bar`",
            ]
        );
    }

    #[test]
    fn checks_versions() {
        assert_eq!(errors(quote!(version = 0)), ["event versions start at 1"]);
        assert_eq!(
            errors(quote!(version = 4294967296)),
            ["the event version must fit in a `u32`"]
        );
        assert_eq!(errors(quote!(upcast_from = Old)).len(), 1);
        assert_eq!(errors(quote!(version = 1, upcast_from = Old)).len(), 1);
        assert!(errors(quote!(version = 2, upcast_from = Old)).is_empty());
        // A bad version is reported once, not again through `upcast_from`.
        assert_eq!(errors(quote!(version = 0, upcast_from = Old)).len(), 1);
    }

    #[test]
    fn rejects_an_empty_name_and_a_bad_crate_path() {
        assert_eq!(
            errors(quote!(name = "", crate = "not a path")),
            [
                r#"expected the path of the eventsource crate, like `crate = "eventsource"`"#,
                "the event name must not be empty",
            ]
        );
    }
}
