//! Fuzzes `Manifest::parse` and checks the schema layer's round-trip and reporting invariants:
//!
//! * accepted: the canonical JSON parses again to an equal value, is a fixed point (serializing
//!   the re-parsed value gives the same string) and raises no warning the input did not raise;
//! * refused: at least one error, and every error is one line (`appcctl validate` prints one
//!   problem per line);
//! * warnings are one line too.
//!
//! Inputs that are not UTF-8 are skipped: manifests are read as text.
#![no_main]

use std::collections::BTreeSet;
use std::fmt::Display;

use appc_pod::schema::{Decoded, Manifest, Warning};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
});

fn check(text: &str) {
    match Manifest::parse(text) {
        Ok(decoded) => check_accepted(&decoded),
        Err(errors) => {
            assert!(
                !errors.is_empty() && errors.iter().next().is_some(),
                "refused without an error"
            );
            for e in errors.iter() {
                assert_one_line("error", e);
            }
        }
    }
}

fn check_accepted(first: &Decoded<Manifest>) {
    for w in &first.warnings {
        assert_one_line("warning", w);
    }
    let canonical = canonical_json(&first.value);
    let second = match Manifest::parse(&canonical) {
        Ok(d) => d,
        Err(errors) => panic!(
            "canonical form of an accepted manifest is refused:\n{errors}\n--- canonical form:\n{canonical}"
        ),
    };
    assert!(
        second.value == first.value,
        "canonical form parses to a different value\n--- first: {:#?}\n--- second: {:#?}\n--- canonical form:\n{canonical}",
        first.value,
        second.value
    );
    let again = canonical_json(&second.value);
    assert!(
        again == canonical,
        "canonical form is not a fixed point\n--- first:\n{canonical}\n--- second:\n{again}"
    );
    // Writing may drop or fix what a warning was about (unknown keys, key case, a missing pod
    // acVersion), never introduce a new complaint. Compared by message: paths may shift if the
    // writer reorders lists.
    let before: BTreeSet<&str> = first.warnings.iter().map(|w| w.message.as_str()).collect();
    let new: Vec<&Warning> = second
        .warnings
        .iter()
        .filter(|w| !before.contains(w.message.as_str()))
        .collect();
    assert!(
        new.is_empty(),
        "canonical form raises new warnings: {new:?}\n--- canonical form:\n{canonical}"
    );
}

fn canonical_json(m: &Manifest) -> String {
    match m {
        Manifest::Image(m) => m.to_canonical_json(),
        Manifest::Pod(m) => m.to_canonical_json(),
    }
}

fn assert_one_line(what: &str, item: &impl Display) {
    let line = item.to_string();
    assert!(
        !line.contains(['\n', '\r']),
        "{what} message is not a single line: {line:?}"
    );
}
