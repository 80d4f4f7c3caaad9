//! Mailbox providers by recipient domain, for `GET /v1/stats?group_by=provider`: the
//! consumer domains of the large providers, each under one name. A domain not listed
//! is its own provider (a company's domain is usually its own mail host), so the
//! table only ever merges, it never hides a domain.

/// (provider, its domains)
const PROVIDERS: &[(&str, &[&str])] = &[
    ("google", &["gmail.com", "googlemail.com"]),
    (
        "microsoft",
        &[
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "hotmail.co.uk",
            "hotmail.fr",
            "outlook.fr",
            "live.co.uk",
            "hotmail.de",
            "outlook.de",
            "hotmail.it",
        ],
    ),
    (
        "yahoo",
        &[
            "yahoo.com",
            "ymail.com",
            "rocketmail.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
            "yahoo.co.jp",
            "aol.com",
            "aim.com",
        ],
    ),
    ("apple", &["icloud.com", "me.com", "mac.com"]),
    ("proton", &["proton.me", "protonmail.com", "pm.me"]),
    (
        "gmx",
        &["gmx.de", "gmx.net", "gmx.com", "web.de", "mail.com"],
    ),
    ("yandex", &["yandex.ru", "yandex.com", "ya.ru"]),
    ("mailru", &["mail.ru", "bk.ru", "inbox.ru", "list.ru"]),
    ("zoho", &["zoho.com", "zohomail.com"]),
    ("fastmail", &["fastmail.com", "fastmail.fm"]),
];

/// The provider of a (lowercased) recipient domain; an unlisted domain is its own.
pub fn provider_of(domain: &str) -> &str {
    PROVIDERS
        .iter()
        .find(|(_, domains)| domains.contains(&domain))
        .map_or(domain, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::provider_of;

    #[test]
    fn known_domains_merge_and_others_stay_themselves() {
        assert_eq!(provider_of("gmail.com"), "google");
        assert_eq!(provider_of("googlemail.com"), "google");
        assert_eq!(provider_of("hotmail.com"), "microsoft");
        assert_eq!(provider_of("example.org"), "example.org");
        assert_eq!(provider_of(""), "");
    }
}
