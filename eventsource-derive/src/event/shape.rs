//! The fingerprint of an event's JSON shape that `#[event]` records as `Event::SHAPE`:
//! field names, types as written and the serde attributes that change the JSON, on one
//! canonical line.
//!
//! The format, which `eventsource::schema` parses back to say what changed:
//!
//! ```text
//! shape  := [attrs " "] body
//! body   := "unit" | "{" [field (", " field)*] "}" | "(" [field (", " field)*] ")"
//! field  := [attrs " "] [name ": "] type
//! attrs  := "#[serde(" item (", " item)* ")]"
//! ```
//!
//! Named fields are sorted by name and serde items are sorted, so reordering either is
//! not a change; types and items are rendered from their tokens with canonical spacing.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt as _;
use syn::punctuated::Punctuated;
use syn::{Attribute, Fields, ItemStruct, Meta, Token};

use crate::ctxt::Ctxt;

/// serde container attributes that do not change the JSON.
const CONTAINER_NO_OPS: &[&str] = &["bound", "crate", "expecting"];
/// serde field attributes that do not change the JSON.
const FIELD_NO_OPS: &[&str] = &["bound", "borrow", "getter"];

/// The canonical shape of `item`. Records an error for what would make the shape depend
/// on the build configuration (`#[cfg]` on a field, serde attributes under `cfg_attr`).
pub(crate) fn shape(cx: &Ctxt, item: &ItemStruct) -> String {
    reject_conditional_serde(cx, &item.attrs);
    let attrs = serde_items(&item.attrs, CONTAINER_NO_OPS);
    let mut fields: Vec<(Option<String>, String)> = Vec::new();
    for field in &item.fields {
        reject_conditional_serde(cx, &field.attrs);
        if let Some(cfg) = field.attrs.iter().find(|attr| attr.path().is_ident("cfg")) {
            cx.error_spanned_by(
                cfg,
                "#[event] fields cannot be conditional: the stored JSON shape would depend \
                 on the build configuration",
            );
        }
        let attrs = serde_items(&field.attrs, FIELD_NO_OPS);
        let ty = canonical(&field.ty);
        let rendered = match &field.ident {
            Some(ident) => format!("{}{}: {ty}", prefix(&attrs), ident.unraw()),
            None => format!("{}{ty}", prefix(&attrs)),
        };
        fields.push((
            field.ident.as_ref().map(|i| i.unraw().to_string()),
            rendered,
        ));
    }
    let body = match &item.fields {
        Fields::Unit => String::from("unit"),
        Fields::Named(_) => {
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            let fields: Vec<_> = fields.into_iter().map(|(_, f)| f).collect();
            format!("{{{}}}", fields.join(", "))
        }
        Fields::Unnamed(_) => {
            let fields: Vec<_> = fields.into_iter().map(|(_, f)| f).collect();
            format!("({})", fields.join(", "))
        }
    };
    format!("{}{body}", prefix(&attrs))
}

/// `#[serde(a, b)] ` or nothing.
fn prefix(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("#[serde({})] ", items.join(", "))
    }
}

/// Every item of every `#[serde(...)]` (and `#[serde_as(...)]`, whose `as` changes the
/// JSON) in `attrs`, except the no-ops, rendered and sorted. An attribute serde itself
/// cannot parse is skipped: serde's derive reports it.
fn serde_items(attrs: &[Attribute], no_ops: &[&str]) -> Vec<String> {
    let mut items = Vec::new();
    for attr in attrs {
        let tool = if attr.path().is_ident("serde") {
            None
        } else if attr.path().is_ident("serde_as") {
            Some("serde_as")
        } else {
            continue;
        };
        let Ok(metas) = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        else {
            continue;
        };
        for meta in metas {
            if no_ops.iter().any(|no_op| meta.path().is_ident(no_op)) {
                continue;
            }
            let rendered = canonical(&meta);
            items.push(match tool {
                Some(tool) => format!("{tool}({rendered})"),
                None => rendered,
            });
        }
    }
    items.sort();
    items
}

/// Records an error for each `cfg_attr` that mentions serde. (rustc resolves an item's
/// own `cfg_attr`s before calling `#[event]`, so in practice this fires on fields.)
fn reject_conditional_serde(cx: &Ctxt, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("cfg_attr")) {
        let tokens = attr.meta.to_token_stream();
        if mentions_serde(tokens) {
            cx.error_spanned_by(
                attr,
                "#[event] cannot fingerprint serde attributes under `cfg_attr`: the stored \
                 JSON shape would depend on the build configuration; write `#[serde(...)]` \
                 without `cfg_attr`",
            );
        }
    }
}

fn mentions_serde(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(ident) => ident == "serde" || ident == "serde_as",
        TokenTree::Group(group) => mentions_serde(group.stream()),
        _ => false,
    })
}

/// Tokens in the canonical spacing: `Vec<u8>`, `&'a str`, `[u8; 4]`,
/// `rename = "x"`, `fn(u8) -> u8`. String literals are kept exactly as written.
pub(crate) fn canonical(tokens: impl ToTokens) -> String {
    let mut out = String::new();
    write_tokens(tokens.into_token_stream(), &mut out);
    out
}

/// What the last thing written was, to decide on a space before the next.
#[derive(Clone, Copy, PartialEq)]
enum Last {
    Nothing,
    Word,
    Punct,
}

fn write_tokens(tokens: TokenStream, out: &mut String) {
    let mut last = Last::Nothing;
    let mut op = String::new();
    for tt in tokens {
        if let TokenTree::Punct(punct) = &tt {
            op.push(punct.as_char());
            if punct.spacing() == Spacing::Joint {
                continue;
            }
            last = write_op(&op, out);
            op.clear();
            continue;
        }
        if !op.is_empty() {
            last = write_op(&op, out);
            op.clear();
        }
        match tt {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                write_tokens(group.stream(), out);
                out.truncate(out.trim_end().len());
                out.push_str(close);
                last = Last::Word;
            }
            other => {
                if last == Last::Word {
                    out.push(' ');
                }
                out.push_str(&other.to_string());
                last = Last::Word;
            }
        }
    }
    if !op.is_empty() {
        write_op(&op, out);
    }
}

fn write_op(op: &str, out: &mut String) -> Last {
    match op {
        "," | ";" => {
            out.push_str(op);
            out.push(' ');
        }
        "=" | "+" | "->" | "=>" | "==" | "!=" => {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            out.push_str(op);
            out.push(' ');
        }
        _ => {
            out.push_str(op);
            return Last::Punct;
        }
    }
    Last::Nothing
}

#[cfg(test)]
mod tests {
    use syn::{ItemStruct, parse_quote};

    use super::{canonical, shape};
    use crate::ctxt::Ctxt;

    fn shape_of(item: &ItemStruct) -> (String, Vec<String>) {
        let cx = Ctxt::new();
        let shape = shape(&cx, item);
        let errors = cx
            .check()
            .err()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        (shape, errors)
    }

    #[test]
    fn renders_types_with_canonical_spacing() {
        let ty: syn::Type = parse_quote!(::std::collections::HashMap<String, Vec<(u8, [u16; 4])>>);
        assert_eq!(
            canonical(&ty),
            "::std::collections::HashMap<String, Vec<(u8, [u16; 4])>>"
        );
        let ty: syn::Type = parse_quote!(Box<dyn Fn(&'static u8) -> Option<u8> + Send>);
        assert_eq!(
            canonical(&ty),
            "Box<dyn Fn(&'static u8) -> Option<u8> + Send>"
        );
        let meta: syn::Meta = parse_quote!(rename(serialize = "a b", deserialize = "c"));
        assert_eq!(
            canonical(&meta),
            r#"rename(serialize = "a b", deserialize = "c")"#
        );
    }

    #[test]
    fn named_fields_are_sorted_with_their_serde_attributes() {
        let item: ItemStruct = parse_quote! {
            /// Docs are not part of the shape.
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields, bound = "")]
            pub struct Opened {
                #[serde(skip_serializing_if = "Option::is_none", default)]
                pub memo: Option<String>,
                /// Neither are field docs or visibility.
                amount: u64,
                #[serde(rename = "type")]
                r#kind: String,
            }
        };
        assert_eq!(
            shape_of(&item),
            (
                "#[serde(deny_unknown_fields, rename_all = \"camelCase\")] {amount: u64, \
                 #[serde(rename = \"type\")] kind: String, #[serde(default, \
                 skip_serializing_if = \"Option::is_none\")] memo: Option<String>}"
                    .to_owned(),
                vec![]
            )
        );
    }

    #[test]
    fn tuple_and_unit_structs() {
        let item: ItemStruct = parse_quote!(
            struct Deposited(#[serde(with = "m")] u64, String);
        );
        assert_eq!(shape_of(&item).0, "(#[serde(with = \"m\")] u64, String)");
        let item: ItemStruct = parse_quote!(
            struct Closed;
        );
        assert_eq!(shape_of(&item).0, "unit");
        let item: ItemStruct = parse_quote!(
            struct Empty {}
        );
        assert_eq!(shape_of(&item).0, "{}");
    }

    #[test]
    fn rejects_conditional_shapes() {
        let item: ItemStruct = parse_quote! {
            #[cfg_attr(feature = "x", serde(rename_all = "camelCase"))]
            struct Opened {
                #[cfg(feature = "x")]
                a: u8,
            }
        };
        let (_, errors) = shape_of(&item);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("under `cfg_attr`"), "{errors:?}");
        assert!(errors[1].contains("cannot be conditional"), "{errors:?}");
    }
}
