//! Value parsers for flags: clap calls them on flags and environment variables alike, so a bad value
//! is a usage error (one line naming the flag, exit 64) before anything runs.
//!
//! Durations and sizes are read by maintained crates (`humantime`, `bytesize`); what they accept is
//! a superset of the forms the docs show (`500ms`, `15s`, `7d`; `512MiB`, `2GB`).

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use tonic::transport::Endpoint;

use crate::{clerk, config::ConfigError};

/// Most HTTP connections `--max-connections` may ask for: far above what one process serves, and
/// far below what would overflow a semaphore.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// A positive duration: `500ms`, `15s`, `2m`, `36h`, `7d`, `1h 30m`, or a bare number of seconds.
///
/// # Errors
/// A message for clap when the value is not a positive duration.
pub fn duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let parsed = match value.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(value).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("expected a positive duration such as 500ms, 15s, 2m, 36h or 7d".to_owned()),
        Err(e) => Err(format!(
            "expected a duration such as 500ms, 15s, 2m, 36h or 7d ({e})"
        )),
    }
}

/// A positive size in bytes: `4096`, `512KiB`, `64MiB`, `2GiB` (`KB`, `MB`, `GB`: powers of 1000).
///
/// # Errors
/// A message for clap when the value is not a positive size.
pub fn byte_size(value: &str) -> Result<u64, String> {
    match value.trim().parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() > 0 => Ok(size.as_u64()),
        _ => Err("expected a positive size such as 4096, 512MiB or 2GiB".to_owned()),
    }
}

/// A webhook body cap: a positive size (as [`byte_size`]) of at most [`clerk::MAX_BODY_BYTES`]
/// (2 MB), so that every stored event, which carries its body, fits in the 4 MiB message default
/// gRPC clients accept.
///
/// # Errors
/// A message for clap when the value is not a size or is too large.
pub fn body_cap(value: &str) -> Result<u64, String> {
    let size = byte_size(value)?;
    if size > clerk::MAX_BODY_BYTES {
        return Err(format!(
            "at most 2MB ({} bytes): every stored event carries its body and must fit in the 4 MiB \
             message gRPC clients accept by default",
            clerk::MAX_BODY_BYTES
        ));
    }
    Ok(size)
}

/// A positive whole number that fits in memory sizes (`usize`).
///
/// # Errors
/// A message for clap when the value is not a positive whole number.
pub fn positive(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a positive whole number".to_owned()),
    }
}

/// A connection cap: positive and at most [`MAX_CONNECTIONS_LIMIT`].
///
/// # Errors
/// A message for clap when the value is out of range.
pub fn connection_cap(value: &str) -> Result<usize, String> {
    match positive(value) {
        Ok(n) if n <= MAX_CONNECTIONS_LIMIT => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_CONNECTIONS_LIMIT}"
        )),
    }
}

/// A fraction above 0 and at most 1, e.g. `0.25`.
///
/// # Errors
/// A message for clap when the value is not such a fraction.
pub fn fraction(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err("expected a fraction above 0 and at most 1, e.g. 0.25".to_owned()),
    }
}

/// `host:port`, where host is an IP address or a name that resolves (`localhost`).
///
/// # Errors
/// A message for clap when the value is not an address.
pub fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    value
        .to_socket_addrs()
        .map_err(|e| format!("expected host:port ({e})"))?
        .next()
        .ok_or_else(|| "the host has no address".to_owned())
}

/// The paths the webhook port serves itself, which the webhook route must not shadow.
const RESERVED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The webhook route: an absolute URL path without query, fragment or spaces, e.g.
/// `/webhooks/clerk`, and none of the probe or metrics paths.
///
/// # Errors
/// A message for clap when the value is not such a path.
pub fn url_path(value: &str) -> Result<String, String> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
        return Err("expected a path such as /webhooks/clerk".to_owned());
    }
    if RESERVED_PATHS.contains(&value) {
        return Err(format!(
            "{value} is served by the bridge itself (probes, metrics); choose another path"
        ));
    }
    Ok(value.to_owned())
}

/// A bridge's gRPC address: `host:port`, or a full `http://` / `https://` URL.
///
/// # Errors
/// A message for clap when the value is not a usable URL.
pub fn grpc_endpoint(value: &str) -> Result<Endpoint, String> {
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    Endpoint::from_shared(url).map_err(|e| format!("expected host:port or a URL ({e})"))
}

/// A NATS server URL: `nats://host:port`, `tls://host:port` (or `host:port`, read as `nats://`).
///
/// # Errors
/// A message for clap when the value is not such a URL.
pub fn nats_url(value: &str) -> Result<async_nats::ServerAddr, String> {
    let value = value.trim();
    let scheme = value.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, None | Some("nats" | "tls")) {
        return Err("expected nats://host:port or tls://host:port".to_owned());
    }
    value
        .parse()
        .map_err(|e| format!("expected nats://host:port ({e})"))
}

/// A JetStream stream name: letters, digits, `_` and `-`, at most 32 (so that it also names
/// the subjects `<name>.>`).
///
/// # Errors
/// A message for clap when the value is not such a name.
pub fn stream_name(value: &str) -> Result<String, String> {
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if value.is_empty() || value.len() > 32 || !plain {
        return Err("expected 1 to 32 letters, digits, '_' or '-'".to_owned());
    }
    Ok(value.to_owned())
}

/// A stream's replica count: 1, 3 or 5 (an even count adds no fault tolerance to Raft).
///
/// # Errors
/// A message for clap for any other value.
pub fn replicas(value: &str) -> Result<usize, String> {
    match value.trim().parse() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        _ => Err("expected 1, 3 or 5".to_owned()),
    }
}

/// Checks that every given file flag (name, value) names a file that exists, so a typo is one line
/// naming its flag at start, not a failure when the file is first used.
///
/// # Errors
/// [`ConfigError`] naming the first flag whose file cannot be found.
pub fn files_exist(flags: &[(&'static str, &Option<PathBuf>)]) -> Result<(), ConfigError> {
    for &(flag, path) in flags {
        if let Some(path) = path {
            std::fs::metadata(path)
                .map_err(|e| ConfigError::bad(flag, &path.display().to_string(), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("3", Duration::from_secs(3)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("36h", Duration::from_secs(36 * 3600)),
            ("1h 30m", Duration::from_secs(5400)),
        ];
        for (text, expected) in cases {
            assert_eq!(duration(text), Ok(expected), "{text}");
        }
        for bad in ["0s", "0", "1y2", "soon", "", "-5s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(byte_size("512MiB"), Ok(512 << 20));
        assert_eq!(byte_size("2GB"), Ok(2_000_000_000));
        assert_eq!(byte_size("4096"), Ok(4096));
        assert_eq!(byte_size("1KiB"), Ok(1024));
        for bad in ["lots", "0", "0MiB", "-1", ""] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_are_positive_and_bounded() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err());
        assert!(positive("-1").is_err());
        assert_eq!(connection_cap("1024"), Ok(1024));
        assert!(connection_cap("18446744073709551615").is_err());
        assert!(connection_cap(&(MAX_CONNECTIONS_LIMIT + 1).to_string()).is_err());
    }

    #[test]
    fn fractions_are_in_the_unit_interval() {
        assert_eq!(fraction("0.25"), Ok(0.25));
        assert_eq!(fraction("1"), Ok(1.0));
        for bad in ["0", "1.5", "-0.1", "NaN", "half"] {
            assert!(fraction(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_paths_and_endpoints() {
        assert_eq!(socket_addr("127.0.0.1:80"), Ok(([127, 0, 0, 1], 80).into()));
        assert!(socket_addr("localhost:80").is_ok());
        assert!(socket_addr("1.2.3.4").is_err());
        assert_eq!(url_path("/hooks"), Ok("/hooks".to_owned()));
        for bad in [
            "hooks", "/a?b", "/a b", "/a#b", "/healthz", "/readyz", "/metrics",
        ] {
            assert!(url_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            grpc_endpoint("127.0.0.1:50051").unwrap().uri().to_string(),
            "http://127.0.0.1:50051/"
        );
        assert!(grpc_endpoint("https://bridge:443").is_ok());
        assert!(grpc_endpoint("not an address").is_err());
    }
}
