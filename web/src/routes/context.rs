//! Who is asking and within which trace: turns request headers into a command context.

use axum::http::HeaderMap;
use event_sourcing::CommandContext;
use lab::accounts::Principal;
use uuid::Uuid;

/// The W3C `traceparent` of the request, or a new trace when it came without one.
fn traceparent(headers: &HeaderMap) -> String {
    let valid = |v: &str| {
        let parts: Vec<&str> = v.split('-').collect();
        parts.len() == 4
            && parts[1].len() == 32
            && parts[2].len() == 16
            && parts
                .iter()
                .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
    };
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid(v))
        .map_or_else(event_sourcing::new_traceparent, str::to_owned)
}

/// A command context acting as `principal` (its id and name go into every event), with
/// `command_id` when the caller chose one.
pub fn command_context(
    headers: &HeaderMap,
    principal: &Principal,
    command_id: Option<Uuid>,
) -> CommandContext {
    let mut context = principal.command_context();
    if let Some(id) = command_id {
        context = context.with_command_id(id);
    }
    if let Some(correlation) = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
    {
        context.correlation_id = correlation;
    }
    context.traceparent = Some(traceparent(headers));
    context.tracestate = headers
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    context
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip_through_percent_encoding() {
        let mut headers = HeaderMap::new();
        let value = format!("a=1; tracseq_session={}", percent_encode("Dr. Ana Müller"));
        headers.insert(axum::http::header::COOKIE, value.parse().expect("header"));
        assert_eq!(
            cookie(&headers, "tracseq_session").as_deref(),
            Some("Dr. Ana Müller")
        );
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn a_valid_traceparent_is_kept_and_a_missing_one_is_made() {
        let mut headers = HeaderMap::new();
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", given.parse().expect("header"));
        assert_eq!(traceparent(&headers), given);
        let made = traceparent(&HeaderMap::new());
        assert_eq!(made.len(), 55);
        assert!(made.starts_with("00-"));
    }
}
