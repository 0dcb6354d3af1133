//! DoH path tokens and DoT server name labels: how random they are, and fresh ones.
//!
//! Both only *identify* an organization: whoever presents one gets that organization's policy
//! (see "Trust model" in the README). A guessable one (`acme`, `acme-7f3c9a`) hands the policy,
//! and what its split-DNS upstreams answer, to anyone who tries it, so the loader rejects
//! anything under [`MIN_TOKEN_BITS`] as estimated by [`estimate_bits`].

use rand::Rng;

pub use crate::config::limits::MIN_TOKEN_BITS;

/// What [`generate`] draws from: lower-case letters and digits, so one token is both a valid
/// DoH path segment and a valid DNS label (DoT server names are case-insensitive).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Length of a generated token: 25 × log2(36) ≈ 129 bits, as much as a random 128-bit key
/// and twice the minimum, in a label well under DNS's 63 bytes.
pub const GENERATED_LENGTH: usize = 25;

/// What one known word is worth: the attacker tries the organization's id and name and a
/// short list of obvious words first, so a word costs about one pick among 256.
const WORD_BITS: f64 = 8.0;

/// What a character continuing a run costs (the same character again, or the next or previous
/// one: `aaaa`, `1234`, `dcba`): the attacker only has to guess that the run goes on.
const RUN_BITS: f64 = 1.0;

/// Words that make a token easy to guess, besides the organization's own id and name.
const COMMON_WORDS: &[&str] = &[
    "admin", "client", "company", "corp", "default", "demo", "dev", "dns", "doh", "dot", "example",
    "family", "guest", "home", "internal", "office", "org", "pass", "password", "private", "prod",
    "public", "query", "school", "secret", "staging", "team", "test", "tls", "token", "user",
];

/// A fresh token: [`GENERATED_LENGTH`] characters of `[a-z0-9]` drawn uniformly from a
/// cryptographically secure generator (rand's thread-local ChaCha, seeded by the OS).
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_LENGTH)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Estimated randomness of `token` in bits: the work an attacker who knows how such tokens
/// are usually made would need, not a proof. `context` holds words the attacker can read
/// off the policy (the organization's id and name).
///
/// The estimate is the sum over the token's parts of what each costs to guess:
/// - a known word (`context` or [`COMMON_WORDS`], longest first, any case): [`WORD_BITS`];
/// - a character continuing a run of equal or consecutive characters: [`RUN_BITS`];
/// - any other character: log2 of the alphabet the token's other characters are drawn from,
///   the union of the classes they use: digits (10), lower-case (26), upper-case (26), the
///   URL-safe symbols `-_.~` (4); letters and digits that are all hexadecimal count as 16.
///
/// A token that repeats a shorter pattern (`k3j9k3j9k3j9`) is worth its pattern plus
/// log2 of the repeat count. What this cannot see is structure it does not know (a phrase of
/// words that are not listed), so it overestimates those: generate tokens, do not invent them.
pub fn estimate_bits(token: &str, context: &[&str]) -> f64 {
    let chars: Vec<char> = token.chars().collect();
    let period = smallest_period(&chars);
    let repeats = chars.len() / period.max(1);
    let pattern: String = chars[..period].iter().collect();
    let bits = estimate_pattern(&pattern, context);
    if repeats > 1 {
        bits + (repeats as f64).log2()
    } else {
        bits
    }
}

/// The words worth little in a token of the organization `id` named `name`: the id, its parts
/// split at `-`, `_` and `.`, and the words of the name, each of at least three characters.
pub fn context_words(id: &str, name: Option<&str>) -> Vec<String> {
    let mut words = vec![id.to_ascii_lowercase()];
    let parts = id.split(['-', '_', '.']);
    let name_words = name
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_alphanumeric());
    for w in parts.chain(name_words) {
        words.push(w.to_ascii_lowercase());
    }
    words.retain(|w| w.len() >= 3);
    words.sort();
    words.dedup();
    words
}

/// The shortest `p` such that the characters repeat every `p` (the whole length if they do
/// not repeat at least twice).
fn smallest_period(chars: &[char]) -> usize {
    let n = chars.len();
    (1..=n / 2)
        .find(|&p| n % p == 0 && (p..n).all(|i| chars[i] == chars[i - p]))
        .unwrap_or(n)
}

fn estimate_pattern(token: &str, context: &[&str]) -> f64 {
    let mut words: Vec<Vec<char>> = context
        .iter()
        .chain(COMMON_WORDS)
        .filter(|w| w.len() >= 3)
        .map(|w| w.to_lowercase().chars().collect())
        .collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let chars: Vec<char> = token.chars().collect();
    let lower: Vec<char> = chars.iter().map(char::to_ascii_lowercase).collect();
    // Split into known words and the characters between them, with their positions.
    let mut others: Vec<(usize, char)> = Vec::new();
    let mut word_count = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let rest = lower.get(i..).unwrap_or(&[]);
        match words.iter().find(|w| rest.starts_with(w)) {
            Some(w) => {
                word_count += 1;
                i += w.len();
            }
            None => {
                others.push((i, chars[i]));
                i += 1;
            }
        }
    }
    let per_char = alphabet_size(others.iter().map(|&(_, c)| c)).log2();
    let mut bits = word_count as f64 * WORD_BITS;
    for (k, &(pos, c)) in others.iter().enumerate() {
        let continues_run = k > 0 && {
            let (prev_pos, prev) = others[k - 1];
            prev_pos + 1 == pos && (i64::from(u32::from(c)) - i64::from(u32::from(prev))).abs() <= 1
        };
        bits += if continues_run { RUN_BITS } else { per_char };
    }
    bits
}

/// The size of the alphabet `chars` look drawn from (at least 1).
fn alphabet_size(chars: impl Iterator<Item = char> + Clone) -> f64 {
    let has = |f: fn(&char) -> bool| chars.clone().any(|c| f(&c));
    let alnum_hex = chars
        .clone()
        .filter(char::is_ascii_alphanumeric)
        .all(|c| c.is_ascii_digit() || matches!(c, 'a'..='f'))
        || chars
            .clone()
            .filter(char::is_ascii_alphanumeric)
            .all(|c| c.is_ascii_digit() || matches!(c, 'A'..='F'));
    let has_letter = has(char::is_ascii_alphabetic);
    let mut size = 0.0;
    if alnum_hex && has_letter {
        size += 16.0;
    } else {
        if has(char::is_ascii_digit) {
            size += 10.0;
        }
        if has(char::is_ascii_lowercase) {
            size += 26.0;
        }
        if has(char::is_ascii_uppercase) {
            size += 26.0;
        }
    }
    if has(|c| !c.is_ascii_alphanumeric()) {
        size += 4.0;
    }
    f64::max(size, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(token: &str) -> f64 {
        estimate_bits(token, &["acme"])
    }

    #[test]
    fn guessable_tokens_are_weak() {
        for weak in [
            "acme",
            "acme-7f3c9a",
            "acme-token",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "9876543210zyxwvutsrqponmlkjihgfedcba",
            "k3j9k3j9k3j9k3j9k3j9k3j9k3j9k3j9",
            "deadbeefcafe",
            "ACME-secret-token-2024",
            "doh-token-acme-corp",
        ] {
            assert!(bits(weak) < MIN_TOKEN_BITS, "{weak}: {}", bits(weak));
        }
    }

    #[test]
    fn random_tokens_are_strong() {
        for strong in [
            "q7x2m9v4k8c3w6p1r5t0z8y2h",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "Zq8_Lr3~pW9.vK2-mX7t",
            "acme-q7x2m9v4k8c3w6p1r5t0",
        ] {
            assert!(bits(strong) >= MIN_TOKEN_BITS, "{strong}: {}", bits(strong));
        }
    }

    #[test]
    fn the_threshold_falls_between_12_and_13_random_characters() {
        // log2(36) ≈ 5.17 bits a character: 12 give 62, 13 give 67.
        assert!(bits("q7x2m9v4k8c3") < MIN_TOKEN_BITS);
        assert!(bits("q7x2m9v4k8c3w") >= MIN_TOKEN_BITS);
    }

    #[test]
    fn generated_tokens_are_strong_labels_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.len(), GENERATED_LENGTH);
            assert!(t.bytes().all(|c| ALPHABET.contains(&c)), "{t}");
            assert!(estimate_bits(t, &[]) >= MIN_TOKEN_BITS, "{t}");
        }
    }

    #[test]
    fn context_words_come_from_id_and_name() {
        assert_eq!(
            context_words("acme-eu.prod", Some("Acme Corp EU")),
            ["acme", "acme-eu.prod", "corp", "prod"]
        );
    }
}
