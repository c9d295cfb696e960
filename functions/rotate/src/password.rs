//! New passwords and random secrets, drawn from the operating system's CSPRNG
//! in the function itself, as Secrets Manager's GetRandomPassword would make
//! them with `RequireEachIncludedType`: one Secrets Manager call less per
//! rotation, and the value never leaves the function before PutSecretValue.
//!
//! GetRandomPassword's characters (API reference, "By default, Secrets Manager
//! uses uppercase and lowercase letters, numbers, and the following characters
//! in passwords: ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``"; no space unless
//! `IncludeSpace`), less the policy's `exclude_characters`.
//! `RequireEachIncludedType`: "at least one upper and lowercase letter, one
//! number, and one punctuation" of the types the password may hold. A type
//! whose every character is excluded (an alphanumeric-only policy, say) is not
//! included, so it is not required: such a policy worked with GetRandomPassword
//! and must keep working. Only a policy that leaves no character is refused.
//!
//! Every character is an independent uniform choice from the allowed ones
//! (`rand`'s `Choose`, which rejects rather than reduces modulo, so no
//! character is favoured), and a draw that lacks a required type is thrown
//! away whole and drawn again: every password with each type is equally
//! likely, and the required characters sit at no particular place.

use crate::config::PasswordPolicy;
use rand::distr::slice::Choose;
use rand::distr::Distribution;
use rand::rngs::SysRng;
use rand::{TryCryptoRng, TryRng};
use std::convert::Infallible;

/// The character types, in GetRandomPassword's words, and their characters.
pub const TYPES: [(&str, &str); 4] = [
    ("lowercase letter", "abcdefghijklmnopqrstuvwxyz"),
    ("uppercase letter", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("number", "0123456789"),
    ("punctuation", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
];

/// Draws with a type missing are thrown away. At the smallest length the
/// configuration allows (20) and the worst exclusions (one lowercase letter,
/// one uppercase letter and one number left), a draw has every type with
/// probability 0.078, so 10,000 draws all failing (0.922^10000) never happens;
/// the bound only keeps a policy no configuration can reach from looping.
const MAX_DRAWS: usize = 10_000;

/// The characters of each type the policy leaves, or why the policy cannot make
/// a password. The configuration checks this at cold start.
pub fn allowed(policy: &PasswordPolicy) -> Result<Vec<Vec<char>>, String> {
    let length = usize::try_from(policy.length)
        .map_err(|_| format!("a password length of {} is not possible", policy.length))?;
    let mut types = Vec::new();
    for (name, chars) in TYPES {
        let left: Vec<char> = chars
            .chars()
            .filter(|c| !policy.exclude_characters.contains(*c))
            .collect();
        if left.is_empty() {
            tracing::debug!(
                excluded = name,
                "every character of a type is excluded; it is not required"
            );
            continue;
        }
        types.push(left);
    }
    if types.is_empty() {
        return Err(
            "exclude_characters excludes every letter, number and punctuation character: no password can be made"
                .to_string(),
        );
    }
    if length < types.len() {
        return Err(format!(
            "a password of {length} characters cannot hold one character of each of the {} types",
            types.len()
        ));
    }
    Ok(types)
}

/// A new password under `policy`, from the operating system's CSPRNG.
pub fn generate(policy: &PasswordPolicy) -> Result<String, String> {
    generate_with(policy, SysRng)
}

fn generate_with<R: TryCryptoRng>(policy: &PasswordPolicy, rng: R) -> Result<String, String> {
    let types = allowed(policy)?;
    let length = usize::try_from(policy.length).unwrap_or_default();
    let alphabet: Vec<char> = types.iter().flatten().copied().collect();
    let choose = Choose::new(&alphabet).map_err(|e| e.to_string())?;
    let mut rng = Checked {
        inner: rng,
        failed: None,
    };
    for _ in 0..MAX_DRAWS {
        let mut password = String::with_capacity(length);
        for _ in 0..length {
            let c = *choose.sample(&mut rng);
            if let Some(e) = &rng.failed {
                return Err(format!(
                    "the operating system's random number generator failed: {e}"
                ));
            }
            password.push(c);
        }
        if types
            .iter()
            .all(|t| password.chars().any(|c| t.contains(&c)))
        {
            return Ok(password);
        }
    }
    Err(format!(
        "no password with every character type in {MAX_DRAWS} draws; allow more characters of each type"
    ))
}

/// A fallible generator as the infallible one `rand`'s distributions take: the
/// first failure is kept (and what was drawn is then discarded by the caller),
/// and from then on it yields all ones, on which every sampling loop ends.
struct Checked<R: TryRng> {
    inner: R,
    failed: Option<R::Error>,
}

impl<R: TryRng> Checked<R> {
    fn keep<T>(&mut self, drawn: Result<T, R::Error>, fallback: T) -> T {
        drawn.unwrap_or_else(|e| {
            self.failed.get_or_insert(e);
            fallback
        })
    }
}

impl<R: TryRng> TryRng for Checked<R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let drawn = self.inner.try_next_u32();
        Ok(self.keep(drawn, u32::MAX))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let drawn = self.inner.try_next_u64();
        Ok(self.keep(drawn, u64::MAX))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let drawn = self.inner.try_fill_bytes(dst);
        if self.keep(drawn.map(|()| true), false) {
            return Ok(());
        }
        dst.fill(u8::MAX);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::URL_UNSAFE_CHARACTERS;

    fn policy(length: i64, exclude: &str) -> PasswordPolicy {
        PasswordPolicy {
            length,
            exclude_characters: exclude.to_string(),
        }
    }

    fn has_every_type(password: &str) -> bool {
        TYPES
            .iter()
            .all(|(_, chars)| password.chars().any(|c| chars.contains(c)))
    }

    #[test]
    fn the_default_policy_makes_url_safe_passwords_with_every_type() {
        let default = PasswordPolicy::default();
        for _ in 0..200 {
            let p = generate(&default).unwrap();
            assert_eq!(p.chars().count(), 32);
            assert!(
                p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)),
                "{p}"
            );
            assert!(!p.chars().any(|c| URL_UNSAFE_CHARACTERS.contains(c)));
            assert!(has_every_type(&p), "{p}");
        }
    }

    #[test]
    fn length_and_exclusions_are_honoured() {
        for length in [4, 20, 64, 4096] {
            let p = generate(&policy(length, "aeiouAEIOU0!\"")).unwrap();
            assert_eq!(p.chars().count() as i64, length);
            assert!(!p.chars().any(|c| "aeiouAEIOU0!\"".contains(c)), "{p}");
            assert!(has_every_type(&p), "{p}");
        }
        // Nothing excluded: every character of every type can appear.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.extend(generate(&policy(4096, "")).unwrap().chars());
        }
        assert_eq!(seen.len(), 26 + 26 + 10 + 32);
        assert!(!seen.contains(&' '), "no space without IncludeSpace");
    }

    #[test]
    fn one_character_left_of_a_type_is_always_there() {
        let only_x: String = TYPES[0].1.chars().filter(|c| *c != 'x').collect();
        let only_q: String = TYPES[1].1.chars().filter(|c| *c != 'Q').collect();
        let exclude = format!("{only_x}{only_q}012345678{URL_UNSAFE_CHARACTERS}-._");
        for _ in 0..100 {
            let p = generate(&policy(20, &exclude)).unwrap();
            for required in ['x', 'Q', '9', '~'] {
                assert!(p.contains(required), "{required} missing: {p}");
            }
        }
    }

    #[test]
    fn a_wholly_excluded_type_is_left_out_and_the_rest_still_required() {
        let cases = [
            TYPES[0].1.to_string(),
            TYPES[1].1.to_string(),
            TYPES[2].1.to_string(),
            format!("{URL_UNSAFE_CHARACTERS}-._~"),
        ];
        for (gone, exclude) in cases.iter().enumerate() {
            for _ in 0..50 {
                let p = generate(&policy(20, exclude)).unwrap();
                assert!(!p.chars().any(|c| exclude.contains(c)), "{p}");
                for (i, (_, chars)) in TYPES.iter().enumerate().filter(|(i, _)| *i != gone) {
                    assert!(
                        p.chars().any(|c| chars.contains(c)),
                        "type {i} missing: {p}"
                    );
                }
            }
        }
        let everything: String = TYPES.iter().map(|(_, c)| *c).collect();
        let err = generate(&policy(32, &everything)).unwrap_err();
        assert!(
            err.contains("exclude_characters") && err.contains("no password"),
            "{err}"
        );
        let err = generate(&policy(3, "")).unwrap_err();
        assert!(err.contains("3 characters"), "{err}");
        assert!(generate(&policy(-1, "")).is_err());
    }

    #[test]
    fn characters_are_drawn_evenly() {
        // 13 characters left (10 digits, one of each other type), so every
        // draw has each type and none is thrown away: over 65,000 characters
        // each one's share is 1/13 (0.077, one standard deviation 0.001).
        let exclude: String = TYPES
            .iter()
            .map(|(_, chars)| chars.chars().skip(1).collect::<String>())
            .collect::<String>()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100 {
            for c in generate(&policy(650, &exclude)).unwrap().chars() {
                *counts.entry(c).or_insert(0usize) += 1;
            }
        }
        assert_eq!(counts.len(), 13, "{counts:?}");
        for (c, n) in counts {
            let share = n as f64 / 65_000.0;
            assert!((share - 1.0 / 13.0).abs() < 0.006, "{c}: {share}");
        }
    }

    #[derive(Debug)]
    struct Broken;

    impl std::fmt::Display for Broken {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("no entropy")
        }
    }

    impl std::error::Error for Broken {}

    /// Works for `n` draws, then fails.
    struct FailsAfter(usize);

    impl TryRng for FailsAfter {
        type Error = Broken;
        fn try_next_u32(&mut self) -> Result<u32, Broken> {
            if self.0 == 0 {
                return Err(Broken);
            }
            self.0 -= 1;
            SysRng.try_next_u32().map_err(|_| Broken)
        }
        fn try_next_u64(&mut self) -> Result<u64, Broken> {
            Ok((u64::from(self.try_next_u32()?) << 32) | u64::from(self.try_next_u32()?))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Broken> {
            for b in dst {
                *b = self.try_next_u32()? as u8;
            }
            Ok(())
        }
    }

    impl TryCryptoRng for FailsAfter {}

    #[test]
    fn a_failing_random_source_is_an_error_never_a_password() {
        for works in [0, 1, 31] {
            let err = generate_with(&PasswordPolicy::default(), FailsAfter(works)).unwrap_err();
            assert!(err.contains("no entropy"), "{err}");
        }
    }
}
