//! The values of `key = value` arguments, shared by both attributes and parsed with error
//! recovery: a bad value is recorded in the [`Ctxt`] and skipped up to the next comma, so
//! every later key is still checked in the same pass.

use std::fmt::Display;

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Path, Token};

use crate::ctxt::Ctxt;

/// Consumes and returns the tokens up to the next top-level comma (or the end).
pub(crate) fn take_until_comma(input: ParseStream) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut tokens = TokenStream::new();
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            tokens.extend([tt]);
            rest = next;
        }
        Ok((tokens, rest))
    })
}

/// Parses `= value` after `meta`'s key as a `T`. On a missing `=` or a value that is not
/// a `T`, records "expected {what}, like `{example}`" on the offending tokens and returns
/// `None`; `Err` only for errors the caller cannot recover from.
pub(crate) fn parse<T: Parse>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    what: &str,
    example: &str,
) -> syn::Result<Option<T>> {
    let path = &meta.path;
    if !meta.input.peek(Token![=]) {
        let rest = take_until_comma(meta.input)?;
        cx.error_spanned_by(quote!(#path #rest), format!("expected `{example}`"));
        return Ok(None);
    }
    let eq: Token![=] = meta.input.parse()?;
    let tokens = take_until_comma(meta.input)?;
    if tokens.is_empty() {
        cx.error_spanned_by(quote!(#path #eq), format!("expected `{example}`"));
        return Ok(None);
    }
    Ok(parse_tokens(
        cx,
        tokens,
        format!("expected {what}, like `{example}`"),
    ))
}

/// Parses all of `tokens` as a `T`, or records `msg` on them.
pub(crate) fn parse_tokens<T: Parse>(
    cx: &Ctxt,
    tokens: TokenStream,
    msg: impl Display,
) -> Option<T> {
    let parsed = syn::parse2(tokens.clone()).ok();
    if parsed.is_none() {
        cx.error_spanned_by(tokens, msg);
    }
    parsed
}

/// Parses `crate = "path"`: a string literal holding the runtime crate's path.
pub(crate) fn crate_path(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Path>> {
    const EXAMPLE: &str = r#"crate = "eventsource""#;
    let Some(lit) = parse::<LitStr>(cx, meta, "a string literal", EXAMPLE)? else {
        return Ok(None);
    };
    let path = lit.parse::<Path>().ok();
    if path.is_none() {
        cx.error_spanned_by(
            &lit,
            format!("expected the path of the eventsource crate, like `{EXAMPLE}`"),
        );
    }
    Ok(path)
}

/// The runtime crate's path: the `crate` argument, or `::eventsource`.
pub(crate) fn krate(path: Option<&Path>) -> TokenStream {
    path.map_or_else(|| quote!(::eventsource), ToTokens::to_token_stream)
}

/// A stable name as a string literal: the `name` argument, or the type's name.
pub(crate) fn name(name: Option<&LitStr>, ident: &Ident) -> TokenStream {
    match name {
        Some(name) => name.to_token_stream(),
        None => LitStr::new(&ident.unraw().to_string(), ident.span()).to_token_stream(),
    }
}

/// Records "{message} `key`" on `meta`'s key and skips its value, whatever it is.
pub(crate) fn reject_key(cx: &Ctxt, meta: &ParseNestedMeta, message: &str) -> syn::Result<()> {
    cx.error_spanned_by(
        &meta.path,
        format!("{message} `{}`", display_tokens(&meta.path)),
    );
    take_until_comma(meta.input).map(drop)
}

/// Tokens as a user would write them: `a::B<u8>`, not `a :: B < u8 >`.
pub(crate) fn display_tokens(tokens: impl ToTokens) -> String {
    let spaced = tokens.to_token_stream().to_string();
    let chars: Vec<char> = spaced.chars().collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut out = String::with_capacity(spaced.len());
    for (i, &c) in chars.iter().enumerate() {
        // A space is kept only between two words (`dyn Trait`) and after a comma.
        let keep = c != ' '
            || (word(out.chars().last().as_ref()) && word(chars.get(i + 1)))
            || out.ends_with(',');
        if keep {
            out.push(c);
        }
    }
    out
}

/// `text` made safe as the literal format string of `assert!`.
pub(crate) fn format_literal(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::display_tokens;

    #[test]
    fn displays_paths_without_token_spaces() {
        let path: syn::Path = parse_quote!(::a::b::Foo<u8, dyn Send>);
        assert_eq!(display_tokens(&path), "::a::b::Foo<u8, dyn Send>");
    }
}
