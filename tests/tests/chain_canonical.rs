//! The hash chain covers payloads and metadata in canonical JSON so that a store copied
//! between SQLite (which keeps the text as appended) and PostgreSQL (whose `jsonb` drops
//! whitespace and duplicate keys, reorders keys and respells numbers) has the same
//! hashes. This checks the promise on the real server: for generated JSON texts in many
//! spellings, the canonical form of the text equals the canonical form of what `jsonb`
//! gives back.

use std::cell::RefCell;

use eventsource::__private::canonical_json;
use eventsource_tests::pg;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Whitespace between tokens, sometimes none.
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("\n\t ".to_owned())
    ]
}

/// A number in one of the spellings JSON allows.
fn number() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        0u64..1_000_000,
        prop::option::of(0u32..1000),
        0usize..3,
        prop::option::of(-12i32..12),
    )
        .prop_map(|(negative, int, fraction, zeros, exponent)| {
            let mut s = String::new();
            if negative {
                s.push('-');
            }
            s.push_str(&int.to_string());
            if let Some(f) = fraction {
                s.push('.');
                s.push_str(&f.to_string());
                s.push_str(&"0".repeat(zeros));
            }
            if let Some(e) = exponent {
                s.push(if e % 2 == 0 { 'e' } else { 'E' });
                if e >= 0 && e % 3 == 0 {
                    s.push('+');
                }
                s.push_str(&e.to_string());
            }
            s
        })
}

/// A string literal with escapes of every kind (no `\u0000`, which `jsonb` refuses).
fn string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 ]{1,4}",
            Just("\\\"".to_owned()),
            Just("\\\\".to_owned()),
            Just("\\/".to_owned()),
            Just("\\n\\t\\r\\b\\f".to_owned()),
            Just("\\u0041".to_owned()),
            Just("\\u00e9".to_owned()),
            Just("\\u001f".to_owned()),
            Just("\\ud83d\\ude00".to_owned()),
            Just("é😀中".to_owned()),
        ],
        0..4,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()))
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number(),
        string(),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (prop::collection::vec((inner.clone(), ws()), 0..5)).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(v, w)| format!("{w}{v}{w}"))
                    .collect();
                format!("[{}]", items.join(","))
            }),
            // Keys from a small set, so that duplicates and reorderings are common.
            (prop::collection::vec(("[a-d]{1,2}|\"\\\\u0061\"", inner, ws()), 0..6)).prop_map(
                |members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v, w)| {
                            let key = if k.starts_with('"') {
                                k.replace("\\\\", "\\")
                            } else {
                                format!("\"{k}\"")
                            };
                            format!("{w}{key}{w}:{w}{v}")
                        })
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
            ),
        ]
    })
}

#[test]
fn canonical_json_is_the_same_through_jsonb() -> Result<(), Box<dyn std::error::Error>> {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let client = RefCell::new(postgres::Client::connect(&url, postgres::NoTls)?);
    let statement = client
        .borrow_mut()
        .prepare("SELECT $1::text::jsonb::text")?;
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&value(), |text| {
        // Every generated text is JSON.
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| TestCaseError::fail(format!("generated {text}: {e}")))?;
        let row = client
            .borrow_mut()
            .query_one(&statement, &[&text])
            .map_err(|e| TestCaseError::fail(format!("jsonb refused {text}: {e}")))?;
        let through_jsonb: String = row.get(0);
        let ours = canonical_json(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let theirs =
            canonical_json(&through_jsonb).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            &ours,
            &theirs,
            "text {} came back as {}",
            text,
            through_jsonb
        );
        Ok(())
    })?;
    Ok(())
}

/// Texts that mean different JSON values have different canonical forms.
#[test]
fn different_values_have_different_forms() -> Result<(), Box<dyn std::error::Error>> {
    for (a, b) in [
        ("1", "10"),
        ("1e1", "1e-1"),
        ("-5", "5"),
        ("0.5", "5"),
        (r#"{"a":1}"#, r#"{"a":"1"}"#),
        (r#"{"a":1,"b":2}"#, r#"{"a":2,"b":1}"#),
        ("[1,2]", "[2,1]"),
        (r#""a\"b""#, r#""a\\b""#),
        ("9007199254740993", "9007199254740992"),
    ] {
        assert_ne!(canonical_json(a)?, canonical_json(b)?, "{a} and {b}");
    }
    Ok(())
}
