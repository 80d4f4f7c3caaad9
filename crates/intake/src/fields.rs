//! RFC 822-style field blocks as DSNs (RFC 3464 section 2.1) and feedback reports
//! (RFC 5965 section 3.1) carry them: `Name: value` lines, folded continuation lines,
//! groups separated by blank lines. Also the header section of an original message.
//! Bounded: at most `MAX_GROUPS` groups of `MAX_FIELDS` fields, each value cut at
//! `MAX_VALUE` bytes.

const MAX_GROUPS: usize = 256;
const MAX_FIELDS: usize = 256;
const MAX_VALUE: usize = 4096;

/// One block of fields; names lowercased, values unfolded and trimmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group(pub Vec<(String, String)>);

impl Group {
    /// The first value of the (lowercase) field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

fn push_value(value: &mut String, more: &str) {
    if value.len() >= MAX_VALUE {
        return;
    }
    if !value.is_empty() {
        value.push(' ');
    }
    let room = MAX_VALUE - value.len();
    let mut cut = more.len().min(room);
    while !more.is_char_boundary(cut) {
        cut -= 1;
    }
    value.push_str(&more[..cut]);
}

/// Splits `text` into field groups. Lines that are neither a field nor a
/// continuation are skipped.
pub fn groups(text: &str) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut current = Group::default();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.0.is_empty() {
                out.push(std::mem::take(&mut current));
                if out.len() >= MAX_GROUPS {
                    return out;
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.0.last_mut() {
                push_value(v, line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains(' ') || current.0.len() >= MAX_FIELDS {
            continue;
        }
        let mut v = String::new();
        push_value(&mut v, value.trim());
        current.0.push((name.to_ascii_lowercase(), v));
    }
    if !current.0.is_empty() && out.len() < MAX_GROUPS {
        out.push(current);
    }
    out
}

/// The header section of a message (everything before the first blank line) as one
/// group.
pub fn header_section(text: &str) -> Group {
    let end = text
        .find("\r\n\r\n")
        .or_else(|| text.find("\n\n"))
        .unwrap_or(text.len());
    groups(&text[..end]).into_iter().next().unwrap_or_default()
}

/// `rfc822; user@example.com` (a DSN address field) or `<user@example.com>` → the
/// bare address.
pub fn address_value(value: &str) -> Option<String> {
    let value = match value.split_once(';') {
        Some((_, a)) => a,
        None => value,
    };
    let a = value
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (a.contains('@') && !a.contains(char::is_whitespace) && a.len() <= 320).then(|| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_unfold_and_split() {
        let g = groups(
            "Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\n\
             Diagnostic-Code: smtp; 550 5.1.1\r\n  user unknown\r\nnot a field\r\n\r\n\r\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].get("reporting-mta"), Some("dns; mx.example"));
        assert_eq!(
            g[1].get("diagnostic-code"),
            Some("smtp; 550 5.1.1 user unknown")
        );
        assert_eq!(
            address_value("rfc822;<A@b.example>").as_deref(),
            Some("A@b.example")
        );
        assert_eq!(address_value("rfc822; nobody"), None);
    }

    #[test]
    fn bounded_on_hostile_input() {
        let long = format!("X: {}\n", "a".repeat(100_000));
        assert_eq!(groups(&long)[0].get("x").map(str::len), Some(MAX_VALUE));
        let many = "a: b\n\n".repeat(10_000);
        assert_eq!(groups(&many).len(), MAX_GROUPS);
        assert!(groups("\u{fffd}:\n :\n\n:").is_empty() || groups("\u{fffd}:").len() <= 1);
    }
}
