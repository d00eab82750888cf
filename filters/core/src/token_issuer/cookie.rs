//! The `Set-Cookie` that carries an issued token to a browser.

use serde::Deserialize;

use crate::config::{is_token_char, ConfigError};

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// The cookie that carries the token too.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCookie {
    /// Cookie name; the jwt filter's `cookie_names` should list it.
    pub name: String,
    /// `HttpOnly` (default true): scripts cannot read the token.
    pub http_only: Option<bool>,
    /// `Secure` (default true): only sent over HTTPS. Pitfall: false only for local tests.
    pub secure: Option<bool>,
    /// `Strict`, `Lax` (default) or `None` (needs `secure`).
    pub same_site: Option<SameSite>,
    /// `Path` (default `/`).
    pub path: Option<String>,
}

/// How the token cookie is written, compiled from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieRules {
    pub name: String,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: SameSite,
    pub path: String,
}

impl CookieRules {
    pub(crate) fn compile(raw: RawCookie) -> Result<CookieRules, ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            path: format!("cookie.{field}"),
            message,
        };
        if raw.name.is_empty() || !raw.name.bytes().all(is_token_char) {
            return Err(err("name", format!("{:?} is not a cookie name", raw.name)));
        }
        let path = raw.path.unwrap_or_else(|| "/".into());
        let path_ok = path.starts_with('/')
            && path
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b';' && b != b',');
        if !path_ok {
            return Err(err(
                "path",
                format!("{path:?}: a path starting with '/', printable, without ';' or ','"),
            ));
        }
        let secure = raw.secure.unwrap_or(true);
        let same_site = raw.same_site.unwrap_or(SameSite::Lax);
        if same_site == SameSite::None && !secure {
            return Err(err(
                "same_site",
                "None needs secure: browsers drop such a cookie".into(),
            ));
        }
        Ok(CookieRules {
            name: raw.name,
            http_only: raw.http_only.unwrap_or(true),
            secure,
            same_site,
            path,
        })
    }

    /// The `Set-Cookie` value for `token`, living as long as the token.
    pub fn set_cookie(&self, token: &str, max_age: u64) -> String {
        let mut cookie = format!(
            "{}={token}; Path={}; Max-Age={max_age}",
            self.name, self.path
        );
        if self.http_only {
            cookie.push_str("; HttpOnly");
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        cookie.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
        cookie
    }
}
