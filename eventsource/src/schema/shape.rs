//! Reading the canonical shapes `#[event]` writes ([`Event::SHAPE`](crate::Event::SHAPE))
//! back into fields, to say what changed between two of them.
//!
//! ```text
//! shape  := [attrs " "] body
//! body   := "unit" | "{" [field (", " field)*] "}" | "(" [field (", " field)*] ")"
//! field  := [attrs " "] [name ": "] type
//! attrs  := "#[serde(" item (", " item)* ")]"
//! ```

/// A parsed shape, borrowing from the text.
#[derive(Debug, PartialEq)]
struct Shape<'a> {
    /// The container's `#[serde(...)]`, or "".
    attrs: &'a str,
    body: Body<'a>,
}

#[derive(Debug, PartialEq)]
enum Body<'a> {
    Unit,
    Named(Vec<Field<'a>>),
    Tuple(Vec<Field<'a>>),
}

#[derive(Debug, PartialEq)]
struct Field<'a> {
    /// The name, for named fields.
    name: Option<&'a str>,
    /// The field's `#[serde(...)]`, or "".
    attrs: &'a str,
    /// The type as written.
    ty: &'a str,
}

impl Body<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Body::Unit => "a unit struct",
            Body::Named(_) => "a struct with named fields",
            Body::Tuple(_) => "a tuple struct",
        }
    }
}

/// What changed from shape `old` to shape `new`, one line per change (empty when they
/// are equal). Shapes that are not in the canonical format (hand-written `SHAPE`s) are
/// compared as a whole.
pub(crate) fn diff(old: &str, new: &str) -> Vec<String> {
    if old == new {
        return Vec::new();
    }
    let (Some(before), Some(after)) = (parse(old), parse(new)) else {
        return vec![format!("shape changed from `{old}` to `{new}`")];
    };
    let mut changes = Vec::new();
    if before.attrs != after.attrs {
        changes.push(format!(
            "serde attributes of the struct changed from {} to {}",
            shown(before.attrs),
            shown(after.attrs)
        ));
    }
    match (&before.body, &after.body) {
        (Body::Unit, Body::Unit) => {}
        (Body::Named(a), Body::Named(b)) => {
            for old_field in a {
                match b.iter().find(|f| f.name == old_field.name) {
                    Some(new_field) => field_changes(old_field, new_field, 0, &mut changes),
                    None => changes.push(format!("{} removed", label(old_field, 0))),
                }
            }
            for new_field in b.iter().filter(|f| !a.iter().any(|o| o.name == f.name)) {
                changes.push(added(new_field, 0));
            }
        }
        (Body::Tuple(a), Body::Tuple(b)) => {
            for (i, old_field) in a.iter().enumerate() {
                match b.get(i) {
                    Some(new_field) => field_changes(old_field, new_field, i, &mut changes),
                    None => changes.push(format!("{} removed", label(old_field, i))),
                }
            }
            for (i, new_field) in b.iter().enumerate().skip(a.len()) {
                changes.push(added(new_field, i));
            }
        }
        (a, b) => changes.push(format!("changed from {} to {}", a.kind(), b.kind())),
    }
    if changes.is_empty() {
        changes.push(format!("shape changed from `{old}` to `{new}`"));
    }
    changes
}

fn field_changes(old: &Field, new: &Field, index: usize, changes: &mut Vec<String>) {
    if old.ty != new.ty {
        changes.push(format!(
            "{}: type changed from `{}` to `{}`",
            label(old, index),
            old.ty,
            new.ty
        ));
    }
    if old.attrs != new.attrs {
        changes.push(format!(
            "{}: serde attributes changed from {} to {}",
            label(old, index),
            shown(old.attrs),
            shown(new.attrs)
        ));
    }
}

fn label(field: &Field, index: usize) -> String {
    match field.name {
        Some(name) => format!("field `{name}`"),
        None => format!("field {index}"),
    }
}

fn added(field: &Field, index: usize) -> String {
    format!("{} added (`{}`)", label(field, index), field.ty)
}

fn shown(attrs: &str) -> String {
    if attrs.is_empty() {
        "none".to_owned()
    } else {
        format!("`{attrs}`")
    }
}

/// Parses a canonical shape; `None` when `text` is not one.
fn parse(text: &str) -> Option<Shape<'_>> {
    let (attrs, body) = split_attrs(text)?;
    let body = if body == "unit" {
        Body::Unit
    } else if let Some(inner) = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')) {
        let fields = split_top(inner)?
            .into_iter()
            .map(|field| {
                let (attrs, rest) = split_attrs(field)?;
                let (name, ty) = rest.split_once(": ")?;
                Some(Field {
                    name: Some(name),
                    attrs,
                    ty,
                })
            })
            .collect::<Option<_>>()?;
        Body::Named(fields)
    } else if let Some(inner) = body.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        let fields = split_top(inner)?
            .into_iter()
            .map(|field| {
                let (attrs, ty) = split_attrs(field)?;
                Some(Field {
                    name: None,
                    attrs,
                    ty,
                })
            })
            .collect::<Option<_>>()?;
        Body::Tuple(fields)
    } else {
        return None;
    };
    Some(Shape { attrs, body })
}

/// A leading `#[...]` and the rest after its space, or `("", text)`.
fn split_attrs(text: &str) -> Option<(&str, &str)> {
    if !text.starts_with("#[") {
        return Some(("", text));
    }
    let end = closing(text, 1)?;
    let (attrs, rest) = text.split_at(end + 1);
    Some((attrs, rest.strip_prefix(' ')?))
}

/// The index of the bracket closing the one at `open`, skipping string literals.
fn closing(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut chars = text.char_indices().skip(open);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => skip_string(&mut chars)?,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Advances past the end of a string literal whose opening quote was just read.
fn skip_string(chars: &mut impl Iterator<Item = (usize, char)>) -> Option<()> {
    while let Some((_, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '"' => return Some(()),
            _ => {}
        }
    }
    None
}

/// `inner` split at the top-level `", "` (outside brackets, generics and strings).
fn split_top(inner: &str) -> Option<Vec<&str>> {
    if inner.is_empty() {
        return Some(Vec::new());
    }
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut prev = ' ';
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => skip_string(&mut chars)?,
            '(' | '[' | '{' | '<' => depth += 1,
            // The `>` of `->` closes nothing.
            '>' if prev == '-' => {}
            ')' | ']' | '}' | '>' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 2;
            }
            _ => {}
        }
        prev = c;
    }
    parts.push(inner.get(start..)?);
    (depth == 0).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::{Body, Field, diff, parse};

    #[test]
    fn parses_the_canonical_format() {
        let shape = parse(
            r#"#[serde(rename_all = "camelCase")] {a: HashMap<String, (u8, [u16; 2])>, #[serde(rename = "x, y")] b: fn(u8) -> u8}"#,
        );
        let fields = vec![
            Field {
                name: Some("a"),
                attrs: "",
                ty: "HashMap<String, (u8, [u16; 2])>",
            },
            Field {
                name: Some("b"),
                attrs: r#"#[serde(rename = "x, y")]"#,
                ty: "fn(u8) -> u8",
            },
        ];
        let shape = shape.expect("a canonical shape");
        assert_eq!(shape.attrs, r#"#[serde(rename_all = "camelCase")]"#);
        assert_eq!(shape.body, Body::Named(fields));
        assert_eq!(parse("unit").map(|s| s.body), Some(Body::Unit));
        assert_eq!(parse("()").map(|s| s.body), Some(Body::Tuple(vec![])));
        assert_eq!(parse("{a: Vec<u8>>}"), None);
        assert_eq!(parse("whatever"), None);
    }

    #[test]
    fn names_each_changed_field() {
        assert_eq!(
            diff(
                "{amount: u64, memo: String, old: u8}",
                "{#[serde(default)] amount: i64, memo: String, new: Vec<u8>}"
            ),
            [
                "field `amount`: type changed from `u64` to `i64`",
                "field `amount`: serde attributes changed from none to `#[serde(default)]`",
                "field `old` removed",
                "field `new` added (`Vec<u8>`)",
            ]
        );
        assert_eq!(
            diff("(u64, u8)", "(u64, u16, String)"),
            [
                "field 1: type changed from `u8` to `u16`",
                "field 2 added (`String`)"
            ]
        );
        assert_eq!(
            diff("#[serde(deny_unknown_fields)] unit", "{}"),
            [
                "serde attributes of the struct changed from `#[serde(deny_unknown_fields)]` to none",
                "changed from a unit struct to a struct with named fields",
            ]
        );
        assert!(diff("{a: u8}", "{a: u8}").is_empty());
        assert_eq!(
            diff("hand written", "{a: u8}"),
            ["shape changed from `hand written` to `{a: u8}`"]
        );
    }
}
