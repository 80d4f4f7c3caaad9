//! Recognising machine openers and clickers: mail privacy proxies that prefetch every
//! image (Apple Mail Privacy Protection) and security scanners that follow every link.
//! Such events are kept and flagged (`machine: "<kind>"`), never dropped: what counts
//! as a human open is the reader's decision, and the raw record stays complete.

use std::net::IpAddr;

/// User-agent fragments (lowercase) of known link scanners and fetchers.
const SCANNERS: &[(&str, &str)] = &[
    ("barracuda", "link-scanner"),
    ("proofpoint", "link-scanner"),
    ("mimecast", "link-scanner"),
    ("safelinks", "link-scanner"),
    ("symantec", "link-scanner"),
    ("trendmicro", "link-scanner"),
    ("forcepoint", "link-scanner"),
    ("googleimageproxy", "image-proxy"),
    ("yahoomailproxy", "image-proxy"),
    ("bot", "bot"),
    ("crawler", "bot"),
    ("spider", "bot"),
    ("curl/", "http-client"),
    ("wget/", "http-client"),
    ("python-requests", "http-client"),
    ("python-urllib", "http-client"),
    ("go-http-client", "http-client"),
    ("headlesschrome", "headless-browser"),
];

/// The kind of machine that made this request, if it looks like one.
pub fn classify(user_agent: Option<&str>, ip: Option<IpAddr>) -> Option<&'static str> {
    // Apple's privacy proxy fetches from Apple's 17.0.0.0/8 with a bare "Mozilla/5.0".
    if let Some(IpAddr::V4(v4)) = ip
        && v4.octets()[0] == 17
    {
        return Some("apple-privacy-proxy");
    }
    let ua = user_agent.map(str::trim).unwrap_or_default();
    if ua.is_empty() {
        return Some("no-user-agent");
    }
    if ua == "Mozilla/5.0" {
        return Some("apple-privacy-proxy");
    }
    let lower = ua.to_ascii_lowercase();
    SCANNERS
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_and_people() {
        let person = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15";
        assert_eq!(classify(Some(person), "192.0.2.1".parse().ok()), None);
        assert_eq!(
            classify(Some(person), "17.58.1.2".parse().ok()),
            Some("apple-privacy-proxy")
        );
        assert_eq!(
            classify(Some("Mozilla/5.0"), None),
            Some("apple-privacy-proxy")
        );
        assert_eq!(
            classify(Some("Mozilla/5.0 (compatible; Barracuda Sentinel)"), None),
            Some("link-scanner")
        );
        assert_eq!(
            classify(Some("Python-urllib/3.11"), None),
            Some("http-client")
        );
        assert_eq!(classify(None, None), Some("no-user-agent"));
    }
}
