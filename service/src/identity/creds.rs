//! The `.creds` file: a user JWT and its NKey seed, in the layout NATS
//! clients read (`nats --creds`, async-nats `with_credentials_file`).

use secrecy::{ExposeSecret, SecretString};

const JWT_BEGIN: &str = "-----BEGIN NATS USER JWT-----";
const JWT_END: &str = "------END NATS USER JWT------";
const SEED_BEGIN: &str = "-----BEGIN USER NKEY SEED-----";
const SEED_END: &str = "------END USER NKEY SEED------";

/// The file's text. It holds the seed: a secret.
pub fn format(jwt: &str, seed: &SecretString) -> SecretString {
    SecretString::from(format!(
        "{JWT_BEGIN}\n{jwt}\n{JWT_END}\n\n\
         ************************* IMPORTANT *************************\n\
         The NKEY seed below proves this identity to NATS: a secret.\n\
         Keep this file private (mode 0600) and never log it.\n\n\
         {SEED_BEGIN}\n{}\n{SEED_END}\n\n\
         *************************************************************\n",
        seed.expose_secret()
    ))
}

/// The JWT in a creds file's text, if it has one.
pub fn jwt(text: &str) -> Option<&str> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| *l == JWT_BEGIN)?;
    lines
        .next()
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jwt_is_found_again() {
        let text = format("aaa.bbb.ccc", &SecretString::from("SUXXXX"));
        assert_eq!(jwt(text.expose_secret()), Some("aaa.bbb.ccc"));
        assert!(text.expose_secret().contains("\nSUXXXX\n"));
        assert_eq!(jwt("nothing here"), None);
    }
}
