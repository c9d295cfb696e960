//! The relay's configuration: where the routing key is, and where PagerDuty is.

use autopilot_shared::config::{self, required, ConfigError};

/// The secret holding the PagerDuty integration's routing key: the key itself,
/// or a JSON object with `routing_key`.
pub const ROUTING_KEY_SECRET: &str = "AUTOPILOT_PAGERDUTY_ROUTING_KEY_SECRET";
/// The Events API v2 endpoint (the EU service has its own).
pub const URL: &str = "AUTOPILOT_PAGERDUTY_URL";

const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub routing_key_secret: String,
    pub url: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(config::env)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let routing_key_secret = required(&lookup, ROUTING_KEY_SECRET)?;
        let url = lookup(URL)
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        // Plain HTTP would send the routing key in clear: only to this machine.
        let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
        if !url.starts_with("https://") && !loopback.iter().any(|p| url.starts_with(p)) {
            return Err(ConfigError::new(
                URL,
                format!("`{url}` is not an https:// URL (plain http is allowed to loopback only)"),
            ));
        }
        Ok(Self {
            routing_key_secret,
            url,
        })
    }
}

/// The routing key in a secret string; the error never shows the value.
pub fn routing_key(secret: &str, text: &str) -> Result<String, String> {
    let key = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map
            .get("routing_key")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        _ => text.trim().to_string(),
    };
    // PagerDuty integration keys are 32 characters.
    if key.len() != 32 || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "secret {secret} holds no PagerDuty routing key (32 letters and digits, or JSON with routing_key)"
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(url: Option<&str>) -> Result<Config, ConfigError> {
        let url = url.map(str::to_string);
        Config::from_lookup(move |k| match k {
            ROUTING_KEY_SECRET => Some("oncall/pagerduty".into()),
            URL => url.clone(),
            _ => None,
        })
    }

    #[test]
    fn the_url_is_https_or_loopback() {
        assert_eq!(load(None).unwrap().url, DEFAULT_URL);
        assert!(load(Some("http://127.0.0.1:8080/v2/enqueue")).is_ok());
        assert_eq!(
            load(Some("http://events.pagerduty.com/v2/enqueue"))
                .unwrap_err()
                .field,
            URL
        );
        assert_eq!(
            Config::from_lookup(|_| None).unwrap_err().field,
            ROUTING_KEY_SECRET
        );
    }

    #[test]
    fn the_routing_key_is_read_bare_or_from_json_and_never_shown() {
        let key = "R0ut1ngKeyR0ut1ngKeyR0ut1ngKey12";
        assert_eq!(routing_key("s", key).unwrap(), key);
        assert_eq!(
            routing_key("s", &format!(r#"{{"routing_key":"{key}"}}"#)).unwrap(),
            key
        );
        let err = routing_key("s", "short-and-wrong").unwrap_err();
        assert!(!err.contains("short-and-wrong"), "{err}");
    }
}
