//! `#[derive(Aggregate)]`: implements `Aggregate` for a struct and generates its event
//! enum.
//!
//! [`ast`] models the input (parsing the attribute with [`attr`]), [`valid`] checks it,
//! [`expand`](mod@expand) emits the code. On an error in the attribute the derive emits
//! the error and a stub ([`expand::fallback`]), so the rest of the crate still
//! compiles and the user sees only the real error.

mod ast;
pub(crate) mod attr;
mod expand;
mod valid;

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::ctxt::Ctxt;

pub(crate) use self::ast::Aggregate;

/// Expands `#[derive(Aggregate)]` on `input`.
///
/// # Errors
/// Every problem found, combined, when the input is not a struct without generics (no
/// stub can be emitted for it). Attribute errors on a supported struct come back as `Ok`:
/// the errors plus a stub.
pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let aggregate = Aggregate::from_syn(&cx, input);
    aggregate.validate(&cx);
    match cx.check() {
        Ok(()) => Ok(expand::derive(&aggregate)),
        Err(err) if aggregate.supported => Ok(expand::fallback(&aggregate, err)),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use syn::{DeriveInput, parse_quote};

    use super::expand;

    #[test]
    fn expands_a_valid_aggregate() -> syn::Result<()> {
        let input: DeriveInput = parse_quote! {
            #[aggregate(name = "account", events(Opened, money::Deposited))]
            pub struct Account { balance: u64 }
        };
        let out = expand(&input)?.to_string();
        for expected in [
            // Each path is resolved once, in an alias; the rest of the code names the alias.
            "type __es_AccountEvent_0 = Opened ;",
            "type __es_AccountEvent_1 = money :: Deposited ;",
            "pub enum AccountEvent { # [doc = \"The `Opened` event.\"] Opened (__es_AccountEvent_0) ,",
            "# [doc = \"The `money::Deposited` event.\"] Deposited (__es_AccountEvent_1) ,",
            "impl :: core :: convert :: From < __es_AccountEvent_1 > for AccountEvent",
            "impl :: eventsource :: EventSet for AccountEvent",
            "impl :: eventsource :: Aggregate for Account",
            "const NAME : & 'static :: core :: primitive :: str = \"account\"",
            "< Self as :: eventsource :: Apply < __es_AccountEvent_1 >> :: apply (self , __es_e)",
            "str_eq (< __es_AccountEvent_0 as :: eventsource :: Event > :: NAME , < \
             __es_AccountEvent_1 as",
            "const HISTORIES : & 'static [& 'static [:: eventsource :: EventShape]] = & [< \
             __es_AccountEvent_0 as :: eventsource :: Event > :: HISTORY , < \
             __es_AccountEvent_1 as :: eventsource :: Event > :: HISTORY ,] ;",
            "find_in_history (< __es_AccountEvent_1 as :: eventsource :: Event > :: HISTORY , \
             __es_type , __es_version ,)",
            "histories_overlap (< __es_AccountEvent_0 as :: eventsource :: Event > :: HISTORY , \
             < __es_AccountEvent_1 as :: eventsource :: Event > :: HISTORY ,)",
        ] {
            assert!(out.contains(expected), "missing `{expected}` in {out}");
        }
        assert!(!out.contains("compile_error"), "{out}");
        // Nothing else names the listed paths: a misspelled one is reported once.
        assert_eq!(out.matches("money :: Deposited").count(), 1, "{out}");
        Ok(())
    }

    #[test]
    fn honours_the_crate_path_and_enum_name() -> syn::Result<()> {
        let input: DeriveInput = parse_quote! {
            #[aggregate(name = "account", crate = "es", event_enum = Happened, events(Opened))]
            struct Account;
        };
        let out = expand(&input)?.to_string();
        assert!(out.contains("enum Happened"), "{out}");
        assert!(out.contains("impl es :: Aggregate for Account"), "{out}");
        assert!(!out.contains("eventsource"), "{out}");
        Ok(())
    }

    #[test]
    fn attribute_errors_come_with_a_stub() -> syn::Result<()> {
        let input: DeriveInput = parse_quote! {
            #[aggregate(foo = 1)]
            struct Account;
        };
        let out = expand(&input)?.to_string();
        assert!(out.contains("unknown aggregate attribute `foo`"), "{out}");
        assert!(out.contains("is required"), "{out}");
        assert!(out.contains("enum AccountEvent { }"), "{out}");
        assert!(
            out.contains("impl :: eventsource :: Aggregate for Account"),
            "{out}"
        );
        Ok(())
    }

    #[test]
    fn unsupported_shapes_are_only_errors() {
        let input: DeriveInput = parse_quote! {
            #[aggregate(name = "account", events(A), foo)]
            enum Account { A }
        };
        let err = expand(&input).expect_err("enums are not supported");
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(
            messages,
            [
                "#[derive(Aggregate)] can only be used on a struct",
                "unknown aggregate attribute `foo`",
            ]
        );
    }
}
