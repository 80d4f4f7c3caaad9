//! The pure content rule engine: given the final message bytes it finds blocklisted
//! link domains, blocked attachments (by extension, declared type and sniffed magic
//! bytes, also inside zip archives), and scores the heuristics. It does no I/O (the
//! blocklist file is read by the caller; clamd is `clamd.rs`) and decides nothing about
//! replies: each finding names its rule, and the caller maps rules to actions.
//!
//! Heuristics, each with its score (the sum is compared to the tenant's threshold):
//!
//! | rule | score | fires when |
//! |---|---|---|
//! | `display_name_spoof` | 5 | the From display name contains a domain or address of another domain than the From address |
//! | `link_text_mismatch` | 4 | an HTML link's visible text is a URL or domain whose host is not the link target's |
//! | `ip_address_link` | 3 | a link's host is a literal IP address |
//! | `suspicious_phrase` | 2 each, at most 6 | the subject or text contains a phrase from `SUSPICIOUS_PHRASES` |

use crate::html::{self, is_web_url};
use crate::mime::{self, Leaf};
use crate::sniff::{self, Dangerous};
use crate::zip;
use std::collections::BTreeSet;

/// Extensions blocked when the configuration names none: executables, scripts,
/// installers, shortcuts and macro-enabled Office documents.
pub const DEFAULT_BLOCKED_EXTENSIONS: &[&str] = &[
    "exe", "dll", "com", "scr", "pif", "cpl", "msi", "msp", "bat", "cmd", "ps1", "psm1", "vbs",
    "vbe", "js", "jse", "wsf", "wsh", "hta", "jar", "lnk", "reg", "sh", "app", "docm", "dotm",
    "xlsm", "xltm", "xlam", "pptm", "potm", "ppsm", "sldm",
];

/// Declared MIME types that are blocked.
pub const BLOCKED_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/x-executable",
    "application/x-elf",
    "application/x-mach-binary",
    "application/x-sh",
    "application/x-shellscript",
    "application/javascript",
    "application/x-javascript",
    "application/hta",
    "application/x-ms-shortcut",
    "application/x-msi",
    "application/vnd.ms-word.document.macroenabled.12",
    "application/vnd.ms-excel.sheet.macroenabled.12",
    "application/vnd.ms-powerpoint.presentation.macroenabled.12",
];

pub const SUSPICIOUS_PHRASES: &[&str] = &[
    "verify your account",
    "confirm your password",
    "account has been suspended",
    "account will be suspended",
    "urgent action required",
    "unusual sign-in activity",
    "update your payment details",
    "wire transfer",
    "buy gift cards",
    "your password expires",
];

/// Uncompressed bytes looked at per zip entry, and per message in total.
const ZIP_ENTRY_CAP: usize = 4 * 1024 * 1024;
const ZIP_BUDGET: usize = 32 * 1024 * 1024;
/// Archives inside archives are opened this deep.
const ZIP_DEPTH: usize = 3;

#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// Lowercased domains; a link to one of them or any subdomain is blocked.
    pub blocked_domains: BTreeSet<String>,
    /// Lowercased extensions without the dot.
    pub blocked_extensions: BTreeSet<String>,
}

impl RuleSet {
    /// Reads a blocklist file: one domain per line; `#` comments and blank lines skipped.
    pub fn parse_blocklist(text: &str) -> BTreeSet<String> {
        text.lines()
            .map(|l| {
                l.split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_end_matches('.')
            })
            .filter(|l| !l.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    }

    pub fn default_extensions() -> BTreeSet<String> {
        DEFAULT_BLOCKED_EXTENSIONS
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn domain_blocked(&self, host: &str) -> Option<String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = host.as_str();
        loop {
            if self.blocked_domains.contains(candidate) {
                return Some(candidate.to_string());
            }
            candidate = candidate.split_once('.')?.1;
        }
    }
}

/// One rule that fired.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `url_blocklist`, `attachment`, or a heuristic's name.
    pub rule: &'static str,
    pub detail: String,
    /// Heuristics only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<u32>,
}

/// An attachment's decoded bytes, for the malware scanner.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub name: Option<String>,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct Inspection {
    pub findings: Vec<Finding>,
    /// Sum of the heuristic scores.
    pub score: u32,
    /// Every link target found (after unwrapping tracking links).
    pub links: Vec<String>,
    pub attachments: Vec<Attachment>,
}

impl Inspection {
    pub fn blocked(&self, rule: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.rule == rule).collect()
    }

    pub fn heuristics(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.score.is_some())
    }
}

/// Inspects the whole message. `unwrap` maps a tracking URL back to its target (so
/// links are checked for what they lead to, also after the tracking rewrite).
pub fn inspect(
    message: &[u8],
    rules: &RuleSet,
    unwrap: &dyn Fn(&str) -> Option<String>,
) -> Inspection {
    let mut out = Inspection::default();
    let leaves = mime::leaves(message);
    let mut html_links = Vec::new();
    let mut texts = Vec::new();
    for leaf in &leaves {
        if leaf.is_html() {
            let raw = leaf.decode(message);
            if let Ok(links) = html::links(&raw, leaf.charset.as_deref()) {
                html_links.extend(links);
            }
            texts.push(leaf.text(message));
        } else if leaf.is_text() {
            let text = leaf.text(message);
            out.links.extend(text_urls(&text));
            texts.push(text);
        } else if leaf.is_file() {
            check_attachment(message, leaf, rules, &mut out);
        }
    }
    for l in &mut html_links {
        if let Some(target) = unwrap(&l.href) {
            l.href = target;
        }
    }
    out.links = out
        .links
        .iter()
        .map(|u| unwrap(u).unwrap_or_else(|| u.clone()))
        .collect();
    out.links.extend(html_links.iter().map(|l| l.href.clone()));
    let mut seen = BTreeSet::new();
    for url in &out.links {
        if let Some(domain) = host_of(url).and_then(|h| rules.domain_blocked(&h))
            && seen.insert(domain.clone())
        {
            out.findings.push(Finding {
                rule: "url_blocklist",
                detail: format!("link to blocklisted domain {domain}"),
                score: None,
            });
        }
    }
    let links = out.links.clone();
    heuristics(message, &html_links, &links, &texts, &mut out);
    out
}

fn check_attachment(message: &[u8], leaf: &Leaf, rules: &RuleSet, out: &mut Inspection) {
    let data = leaf.decode(message);
    let name = leaf.filename.clone();
    let label = name.clone().unwrap_or_else(|| leaf.content_type.clone());
    if let Some(ext) = name.as_deref().and_then(|n| extension(n, rules)) {
        out.findings
            .push(attachment(format!("{label}: blocked extension .{ext}")));
    } else if BLOCKED_TYPES.contains(&leaf.content_type.as_str()) {
        out.findings.push(attachment(format!(
            "{label}: blocked type {}",
            leaf.content_type
        )));
    } else if let Some(d) = sniff::sniff(&data) {
        out.findings.push(attachment(format!(
            "{label}: content is {} (declared {})",
            d.as_str(),
            leaf.content_type
        )));
    } else if zip::is_zip(&data) {
        let mut budget = ZIP_BUDGET;
        if let Some(why) = inspect_zip(&data, rules, &mut budget, 1) {
            out.findings.push(attachment(format!("{label}: {why}")));
        }
    }
    out.attachments.push(Attachment { name, data });
}

fn attachment(detail: String) -> Finding {
    Finding {
        rule: "attachment",
        detail,
        score: None,
    }
}

/// The first reason an archive is blocked, if any.
fn inspect_zip(data: &[u8], rules: &RuleSet, budget: &mut usize, depth: usize) -> Option<String> {
    let entries = zip::entries(data, ZIP_ENTRY_CAP, budget)?;
    if sniff::ooxml_macro(entries.iter().map(|e| e.name.as_str())) {
        return Some(Dangerous::OoxmlMacro.as_str().to_string());
    }
    for e in &entries {
        if let Some(ext) = extension(&e.name, rules) {
            return Some(format!(
                "archive entry {} has blocked extension .{ext}",
                e.name
            ));
        }
        if let Some(d) = sniff::sniff(&e.data) {
            return Some(format!("archive entry {} is {}", e.name, d.as_str()));
        }
        if zip::is_zip(&e.data)
            && depth < ZIP_DEPTH
            && let Some(why) = inspect_zip(&e.data, rules, budget, depth + 1)
        {
            return Some(format!("{} → {why}", e.name));
        }
    }
    None
}

fn extension(name: &str, rules: &RuleSet) -> Option<String> {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let ext = file
        .rsplit_once('.')?
        .1
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    rules.blocked_extensions.contains(&ext).then_some(ext)
}

/// `http(s)://...` runs in plain text, ended by whitespace or `<>"`.
pub fn text_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find("http").map(|p| p + from) {
        let end = text[p..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\''))
            .map(|e| p + e)
            .unwrap_or(text.len());
        let candidate = text[p..end].trim_end_matches(['.', ',', ')', ';', ']']);
        if is_web_url(candidate) {
            out.push(candidate.to_string());
        }
        from = end.max(p + 4);
    }
    out
}

/// The lowercased host of an http(s) URL (userinfo and port removed).
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#', '\\']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next()?.trim_start_matches('[')
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

/// The last two labels, as a cheap stand-in for the registrable domain.
fn base_domain(host: &str) -> String {
    let labels: Vec<&str> = host.trim_start_matches("www.").rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, name, ..] => format!("{name}.{tld}"),
        _ => host.to_string(),
    }
}

/// A domain-looking token in `text` (`word.word`, letters only in the last label).
fn domain_in(text: &str) -> Option<String> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '"' | ',' | '@' | '/' | ':')
    })
    .map(|t| t.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
    .find(|t| {
        t.contains('.')
            && t.rsplit('.')
                .next()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
            && t.split('.').all(|l| !l.is_empty())
    })
    .map(str::to_ascii_lowercase)
}

fn heuristic(out: &mut Inspection, rule: &'static str, score: u32, detail: String) {
    out.score += score;
    out.findings.push(Finding {
        rule,
        detail,
        score: Some(score),
    });
}

fn heuristics(
    message: &[u8],
    html_links: &[html::Link],
    links: &[String],
    texts: &[String],
    out: &mut Inspection,
) {
    let (section, _) = mime::split_entity(message);
    // Only `From` and `Subject` are read: the trace fields above them (every message
    // has our own `Received:`) need not go through their grammar.
    let wanted: String = mime::header_fields(section)
        .into_iter()
        .filter(|(name, _)| name == "from" || name == "subject")
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let parsed = mail_parser::MessageParser::default().parse_headers(wanted.as_bytes());
    let subject = parsed
        .as_ref()
        .and_then(|m| m.subject())
        .unwrap_or_default()
        .to_lowercase();
    if let Some(from) = parsed
        .as_ref()
        .and_then(|m| m.from())
        .and_then(|l| l.first())
    {
        let address_domain = from
            .address()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        if let (Some(name), Some(domain)) = (from.name(), address_domain)
            && let Some(shown) = domain_in(name)
            && base_domain(&shown) != base_domain(&domain)
        {
            heuristic(
                out,
                "display_name_spoof",
                5,
                format!("display name shows {shown}, address is at {domain}"),
            );
        }
    }
    for l in html_links {
        let (Some(shown), Some(target)) = (domain_in(&l.text), host_of(&l.href)) else {
            continue;
        };
        if !is_web_url(&l.href) || base_domain(&shown) == base_domain(&target) {
            continue;
        }
        heuristic(
            out,
            "link_text_mismatch",
            4,
            format!("link text shows {shown}, link goes to {target}"),
        );
        break;
    }
    if let Some(ip) = links
        .iter()
        .filter_map(|u| host_of(u))
        .find(|h| h.parse::<std::net::IpAddr>().is_ok())
    {
        heuristic(
            out,
            "ip_address_link",
            3,
            format!("link to the address {ip}"),
        );
    }
    let mut phrase_score = 0;
    let all_text = texts
        .iter()
        .map(|t| t.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    // One pass over the subject and one over the text find every phrase present.
    let mut present = [false; SUSPICIOUS_PHRASES.len()];
    for haystack in [&subject, &all_text] {
        for m in phrase_finder().find_overlapping_iter(haystack.as_str()) {
            present[m.pattern().as_usize()] = true;
        }
    }
    for (phrase, _) in SUSPICIOUS_PHRASES.iter().zip(present).filter(|(_, p)| *p) {
        if phrase_score < 6 {
            phrase_score += 2;
            heuristic(
                out,
                "suspicious_phrase",
                2,
                format!("contains \"{phrase}\""),
            );
        }
    }
}

/// Finds every [`SUSPICIOUS_PHRASES`] entry in a text (overlapping matches, so a
/// phrase inside another is found too).
fn phrase_finder() -> &'static aho_corasick::AhoCorasick {
    static FINDER: std::sync::LazyLock<aho_corasick::AhoCorasick> =
        std::sync::LazyLock::new(|| {
            aho_corasick::AhoCorasick::new(SUSPICIOUS_PHRASES).expect("fixed phrases")
        });
    &FINDER
}

#[cfg(test)]
mod tests;
