//! Stateful fakes of the upstreams (Authentik, Outline and OpenFGA), for the integration tests, the
//! benchmarks and the `demo` subcommand.
//!
//! Each fake is a real HTTP server (actix-web, bound to `127.0.0.1:0`) spawned on the current tokio
//! runtime, so the bridge talks to it exactly as it talks to the real server. The fakes copy the
//! details the contracts say a client must survive: status codes, envelopes, field names and the
//! pagination quirks (docs/src/upstream/outline.md §3, §4, §6, §9.1; docs/src/upstream/authentik.md §7, §12;
//! docs/src/upstream/openfga.md §2, §3, §5). `tests/api/contract.rs` and `tests/api/contract_openfga.rs`
//! validate their answers against the vendors' OpenAPI specs.
//!
//! State sits behind a `std::sync::Mutex` that is never held across an `.await`, so the seeding
//! and inspection methods are plain synchronous calls.

/// The fake Authentik API and notification transport.
pub mod authentik;
/// The fake OpenFGA server.
pub mod openfga;
/// The fake Outline API.
pub mod outline;

pub use authentik::{
    event_document, python_json, test_button_document, AuthentikCall, FakeAuthentik,
    FakeAuthentikGroup, FakeAuthentikOptions, WebhookDelivery,
};
pub use openfga::{FakeOpenFga, FakeOpenFgaOptions, FgaCall};
pub use outline::{outline_signature, FakeGroup, FakeOutline, FakeOutlineOptions, OutlineCall};

use std::fmt::Write as _;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A random version-4 UUID in its dashed, lower-case form. Both upstreams use v4 ids.
pub(crate) fn new_uuid() -> String {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    nanos: u32,
    weekday: usize,
}

fn parts(t: SystemTime) -> Parts {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let rem = secs % 86_400;
    Parts {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: (rem % 3600) / 60,
        second: rem % 60,
        nanos: d.subsec_nanos(),
        // 1970-01-01 was a Thursday.
        weekday: ((days + 4) % 7) as usize,
    }
}

/// JavaScript's `Date.toJSON()`: millisecond precision, `Z`. Outline's timestamps (docs/src/upstream/outline.md §2.2).
pub(crate) fn iso_millis(t: SystemTime) -> String {
    let p = parts(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        p.year,
        p.month,
        p.day,
        p.hour,
        p.minute,
        p.second,
        p.nanos / 1_000_000
    )
}

/// Python's `isoformat()` as Authentik renders it: microseconds, left out when zero, and `Z`
/// (docs/src/upstream/authentik.md §12 "Datetimes").
pub(crate) fn iso_micros(t: SystemTime) -> String {
    let p = parts(t);
    let micros = p.nanos / 1000;
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    );
    if micros != 0 {
        let _ = write!(s, ".{micros:06}");
    }
    s.push('Z');
    s
}

/// JavaScript's `Date.prototype.toString()` in UTC, which Outline v1.9.2 sends as
/// `RateLimit-Reset` (docs/src/upstream/outline.md §4.4).
pub(crate) fn js_date_string(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let p = parts(t);
    format!(
        "{} {} {:02} {:04} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[p.weekday],
        MONTHS[(p.month - 1) as usize],
        p.day,
        p.year,
        p.hour,
        p.minute,
        p.second
    )
}

/// Decodes `%XX` escapes and `+` in one query-string component.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match hex::decode(&bytes[i + 1..i + 3]) {
                Ok(b) => {
                    out.extend_from_slice(&b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query-string component the way Node's `querystring.stringify` does.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Splits a raw query string into decoded pairs, keeping repeats and their order: Authentik's
/// array filters (`groups_by_pk=a&groups_by_pk=b`) repeat the key.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// One `http://host:port/path?query` target. The fakes only ever post to the bridge on loopback,
/// so plain HTTP is enough.
struct HttpTarget {
    host: String,
    port: u16,
    path: String,
}

fn parse_http_url(url: &str) -> io::Result<HttpTarget> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: {url}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// URLs are supported by the fakes"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("bad IPv6 host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| invalid("bad port"))?,
            None if after.is_empty() => 80,
            None => return Err(invalid("bad IPv6 host")),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>().map_err(|_| invalid("bad port"))?,
            ),
            None => (authority.to_string(), 80),
        }
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    Ok(HttpTarget { host, port, path })
}

/// A minimal HTTP/1.1 POST, enough for the fakes' outgoing webhooks (the shared dependency set has
/// no HTTP client that may be used here). Sends `Connection: close` and reads to EOF.
/// Returns the status code and the response body (not de-chunked; the fakes only log it).
pub(crate) async fn http_post(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let target = parse_http_url(url)?;
    let work = async {
        let mut stream =
            tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
        let mut head = format!("POST {} HTTP/1.1\r\n", target.path);
        let host_header = if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        let _ = write!(head, "Host: {host_header}\r\n");
        for (name, value) in headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(
            head,
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok::<_, io::Error>((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "webhook POST timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_like_js_and_python() {
        let t = UNIX_EPOCH + Duration::from_millis(1_724_340_000_123);
        assert_eq!(iso_millis(t), "2024-08-22T15:20:00.123Z");
        assert_eq!(
            js_date_string(t),
            "Thu Aug 22 2024 15:20:00 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(
            iso_micros(UNIX_EPOCH + Duration::from_secs(1_724_340_000)),
            "2024-08-22T15:20:00Z"
        );
        assert_eq!(
            iso_micros(UNIX_EPOCH + Duration::from_micros(1_724_340_000_000_042)),
            "2024-08-22T15:20:00.000042Z"
        );
    }

    #[test]
    fn uuids_are_v4() {
        let id = new_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn query_strings_decode_repeats() {
        let q = parse_query("a=1&a=2&b=x%20y+z&c");
        assert_eq!(
            q,
            vec![
                ("a".into(), "1".into()),
                ("a".into(), "2".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn urls_parse() {
        let t = parse_http_url("http://127.0.0.1:8430/webhooks/authentik?token=a").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8430, "/webhooks/authentik?token=a")
        );
        let t = parse_http_url("http://[::1]:9/h").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 9, "/h"));
        let t = parse_http_url("http://bridge?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("bridge", 80, "/?x=1")
        );
        assert!(parse_http_url("https://x").is_err());
    }
}
