//! Free text from clients (names, addresses, descriptions), made safe to store, show and
//! pass on: Unicode NFC, trimmed, bounded, and free of the characters that poison a
//! store or fool a reader. A NUL byte cannot be stored by PostgreSQL (the event that
//! carries it could never be handled); bidirectional overrides and invisible characters
//! make what a person reads differ from what is stored.

use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain {kind} (U+{code:04X} at character {position})")]
    Forbidden {
        kind: &'static str,
        code: u32,
        position: usize,
    },
}

/// Which line breaks a field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    /// Line feeds and tabs are allowed (a description); other control characters are not.
    Many,
}

/// `raw` normalised (NFC, trimmed) if it is 1 to `max_chars` characters of allowed text.
pub fn clean(raw: &str, max_chars: usize, lines: Lines) -> Result<String, TextError> {
    let text: String = raw.nfc().collect::<String>().trim().to_owned();
    for (position, c) in text.chars().enumerate() {
        if let Some(kind) = forbidden(c, lines) {
            return Err(TextError::Forbidden {
                kind,
                code: c as u32,
                position: position + 1,
            });
        }
    }
    match text.chars().count() {
        0 => Err(TextError::Empty),
        count if count > max_chars => Err(TextError::TooLong { max: max_chars }),
        _ => Ok(text),
    }
}

/// What kind of refused character `c` is, if it is one.
fn forbidden(c: char, lines: Lines) -> Option<&'static str> {
    match c {
        '\n' | '\t' if lines == Lines::Many => None,
        c if c.is_control() => Some("a control character"),
        // Embeddings, overrides and isolates, and the implicit marks (LRM, RLM, ALM).
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => Some("a bidirectional control"),
        // Zero-width space, non-joiner, joiner, word joiner, invisible operators, the
        // byte order mark, the Mongolian vowel separator and the soft hyphen.
        '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{FEFF}'
        | '\u{180E}'
        | '\u{00AD}' => Some("an invisible character"),
        // Line and paragraph separators break a line where a reader does not expect it.
        '\u{2028}' | '\u{2029}' => Some("a line separator"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Lines, TextError, clean, forbidden};

    #[test]
    fn text_is_normalised_and_trimmed() {
        // "é" as e + combining acute becomes the one precomposed character.
        assert_eq!(
            clean("  Cafe\u{301} 서울  ", 10, Lines::One).unwrap(),
            "Caf\u{e9} 서울"
        );
    }

    #[test]
    fn control_bidi_and_invisible_characters_are_refused_with_where() {
        assert_eq!(
            clean("Seoul\u{0}evil", 100, Lines::One),
            Err(TextError::Forbidden {
                kind: "a control character",
                code: 0,
                position: 6
            })
        );
        let refusal = clean("abc\u{202E}gpj.exe", 100, Lines::One)
            .unwrap_err()
            .to_string();
        assert_eq!(
            refusal,
            "must not contain a bidirectional control (U+202E at character 4)"
        );
        assert!(clean("a\u{200B}b", 100, Lines::One).is_err());
        assert!(clean("line\nbreak", 100, Lines::One).is_err());
        assert_eq!(
            clean("line\nbreak", 100, Lines::Many).unwrap(),
            "line\nbreak"
        );
    }

    #[test]
    fn length_counts_characters_after_trimming() {
        assert_eq!(clean("   ", 5, Lines::One), Err(TextError::Empty));
        assert_eq!(clean("  한국어  ", 3, Lines::One).unwrap(), "한국어");
        assert_eq!(
            clean("한국어!", 3, Lines::One),
            Err(TextError::TooLong { max: 3 })
        );
    }

    proptest! {
        #[test]
        fn what_is_accepted_is_clean_bounded_and_stable(raw in any::<String>(), many in any::<bool>()) {
            let lines = if many { Lines::Many } else { Lines::One };
            if let Ok(text) = clean(&raw, 50, lines) {
                prop_assert!(!text.is_empty() && text.chars().count() <= 50);
                prop_assert!(text.chars().all(|c| forbidden(c, lines).is_none()));
                prop_assert_eq!(text.trim(), text.as_str());
                prop_assert_eq!(clean(&text, 50, lines), Ok(text.clone()), "cleaning twice changes nothing");
            }
        }

        #[test]
        fn a_forbidden_character_anywhere_is_refused(
            before in "[a-z가-힣 ]{0,20}",
            after in "[a-z가-힣 ]{0,20}",
            bad in prop::sample::select(vec!['\u{0}', '\u{7}', '\u{1B}', '\u{7F}', '\u{202E}', '\u{2067}', '\u{200B}', '\u{FEFF}', '\u{2028}']),
        ) {
            let raw = format!("x{before}{bad}{after}x");
            let refused = matches!(clean(&raw, 100, Lines::Many), Err(TextError::Forbidden { .. }));
            prop_assert!(refused);
        }
    }
}
