//! A camera's credentials: from a file only its owner may read (`user`
//! on the first line, the password on the second; or `user:password` on
//! one), or from an environment variable holding `user:password`. Never
//! from the camera's URL, which ends up in configuration listings.

use std::path::Path;

use zeroize::Zeroizing;

/// A user name and its password, wiped from memory when dropped.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(…)")
    }
}

/// Parse `user\npassword` or `user:password`.
pub fn parse(text: &str) -> Result<Credentials, String> {
    let text = text.trim_end_matches(['\n', '\r']);
    let (user, pass) = match text.split_once('\n') {
        Some((u, p)) => (u.trim_end_matches('\r'), p.trim_end_matches(['\n', '\r'])),
        None => text
            .split_once(':')
            .ok_or("expected `user:password`, or the user and the password on two lines")?,
    };
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    Ok(Credentials {
        username: user.to_owned(),
        password: Zeroizing::new(pass.to_owned()),
    })
}

/// Read a credentials file: it must be readable by its owner alone.
pub fn from_file(path: &Path) -> Result<Credentials, String> {
    let bytes = alpr_shared::private::read_key_file(path).map_err(|e| e.to_string())?;
    let text = Zeroizing::new(
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("{}: not UTF-8 text", path.display()))?,
    );
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read `user:password` from the environment variable `var`.
pub fn from_env(var: &str) -> Result<Credentials, String> {
    let text = Zeroizing::new(
        std::env::var(var).map_err(|_| format!("the environment variable {var} is not set"))?,
    );
    parse(&text).map_err(|e| format!("${var}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_a_password_may_hold_a_colon() {
        let c = parse("admin:pa:ss\n").expect("one line");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "pa:ss")
        );
        let c = parse("admin\nsecret:x\n").expect("two lines");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "secret:x")
        );
        assert!(parse("nopassword").is_err());
        assert!(format!("{c:?}").find("secret").is_none());
    }
}
