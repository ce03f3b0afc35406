//! Account rules: what an email, a name and a password must be. Pure.

use chassis::text::{Lines, clean};

/// An email address, trimmed and lower-cased: `local@domain.tld`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = clean(raw, 254, Lines::One)
            .map_err(|error| format!("email {error}"))?
            .to_lowercase();
        let invalid = || Err(format!("email {:?} is not a valid address", raw.trim()));
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid();
        }
        let Some((local, domain)) = email.split_once('@') else {
            return invalid();
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain_ok {
            return invalid();
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, String> {
        clean(raw, 100, Lines::One)
            .map(Name)
            .map_err(|error| format!("name {error}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy: 8 to 128 characters, and not the email.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str, email: &Email) -> Result<Self, String> {
        let length = raw.chars().count();
        if length < 8 {
            return Err("password must be at least 8 characters".into());
        }
        if length > 128 {
            return Err("password must be at most 128 characters".into());
        }
        let lowered = raw.to_lowercase();
        let local_part = email.as_str().split('@').next().unwrap_or_default();
        if lowered == email.as_str() || lowered == local_part {
            return Err("password must not be the email".into());
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_bad_ones_refused() {
        assert_eq!(
            Email::parse("  Kim@Example.COM ").unwrap().as_str(),
            "kim@example.com"
        );
        for bad in [
            "",
            "kim",
            "kim@",
            "@example.com",
            "kim@example",
            "kim@@example.com",
            "kim @example.com",
            "kim@exa_mple.com",
            "kim@.example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_password_policy_is_enforced() {
        let email = Email::parse("kim.minji@example.com").unwrap();
        assert!(Password::parse("short", &email).is_err());
        assert!(Password::parse("kim.minji@example.com", &email).is_err());
        assert!(Password::parse("KIM.MINJI@EXAMPLE.COM", &email).is_err());
        assert!(Password::parse("kim.minji", &email).is_err());
        assert!(Password::parse(&"x".repeat(129), &email).is_err());
        assert!(Password::parse("correct horse battery", &email).is_ok());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse(" 김민지 ").unwrap().as_str(), "김민지");
        assert!(Name::parse("  ").is_err());
        assert!(Name::parse(&"가".repeat(101)).is_err());
    }
}
