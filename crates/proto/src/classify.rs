//! What a reply means for a recipient, decided by exhaustive matches: delivered,
//! deferred, or bounced with a class (hard/soft) and a category. RFC 3463 enhanced
//! codes decide the category when present; the basic code and the text otherwise.

// The classes and categories are the events' vocabulary (`mailroom_model`, below this
// crate): a bounce event records exactly what this returns.
pub use mailroom_model::{BounceCategory, BounceClass};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Deferred,
    Bounced(BounceClass, BounceCategory),
}

/// Classifies a reply code with its enhanced code and text.
pub fn classify(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> Verdict {
    match code / 100 {
        2 => Verdict::Delivered,
        5 => {
            let (class, category) = bounce_kind(enhanced, text);
            Verdict::Bounced(class, category)
        }
        // 4xx, and anything out of range (1xx, 3xx where a final reply was due):
        // temporary, try again.
        _ => Verdict::Deferred,
    }
}

fn bounce_kind(enhanced: Option<(u8, u16, u16)>, text: &str) -> (BounceClass, BounceCategory) {
    use BounceCategory as C;
    use BounceClass as K;
    if let Some((_, subject, detail)) = enhanced {
        match (subject, detail) {
            (1, 1) | (1, 6) => return (K::Hard, C::BadMailbox),
            (1, 2) | (1, 10) => return (K::Hard, C::BadDomain),
            (1, _) => return (K::Hard, C::BadMailbox),
            (2, 2) => return (K::Soft, C::MailboxFull),
            (2, 1) => return (K::Hard, C::BadMailbox),
            (2, 3) | (3, 4) => return (K::Soft, C::MessageTooLarge),
            (7, _) => return (K::Soft, C::PolicyBlock),
            (4, 4) => return (K::Hard, C::BadDomain),
            _ => {}
        }
    }
    let lower = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&[
        "user unknown",
        "no such user",
        "mailbox unavailable",
        "does not exist",
        "unknown user",
        "invalid recipient",
        "recipient not found",
    ]) {
        (K::Hard, C::BadMailbox)
    } else if has(&[
        "quota",
        "mailbox full",
        "over quota",
        "insufficient storage",
    ]) {
        (K::Soft, C::MailboxFull)
    } else if has(&["too large", "too big", "size limit", "message size"]) {
        (K::Soft, C::MessageTooLarge)
    } else if has(&[
        "spam",
        "blocked",
        "policy",
        "blacklist",
        "blocklist",
        "rejected for",
        "reputation",
        "dmarc",
        "spf",
        "dkim",
    ]) {
        (K::Soft, C::PolicyBlock)
    } else {
        (K::Soft, C::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BounceCategory as C;
    use BounceClass as K;

    /// (code, enhanced code, text, expected verdict)
    type Case = (u16, Option<(u8, u16, u16)>, &'static str, Verdict);

    #[test]
    fn vectors() {
        let cases: &[Case] = &[
            (250, Some((2, 0, 0)), "ok", Verdict::Delivered),
            (451, Some((4, 2, 0)), "try later", Verdict::Deferred),
            (421, None, "closing", Verdict::Deferred),
            (
                550,
                Some((5, 1, 1)),
                "no",
                Verdict::Bounced(K::Hard, C::BadMailbox),
            ),
            (
                550,
                Some((5, 1, 10)),
                "null mx",
                Verdict::Bounced(K::Hard, C::BadDomain),
            ),
            (
                552,
                Some((5, 2, 2)),
                "full",
                Verdict::Bounced(K::Soft, C::MailboxFull),
            ),
            (
                552,
                Some((5, 3, 4)),
                "big",
                Verdict::Bounced(K::Soft, C::MessageTooLarge),
            ),
            (
                554,
                Some((5, 7, 1)),
                "spam",
                Verdict::Bounced(K::Soft, C::PolicyBlock),
            ),
            (
                550,
                None,
                "User unknown in virtual table",
                Verdict::Bounced(K::Hard, C::BadMailbox),
            ),
            (
                552,
                None,
                "Mailbox full",
                Verdict::Bounced(K::Soft, C::MailboxFull),
            ),
            (
                554,
                None,
                "Message rejected as spam",
                Verdict::Bounced(K::Soft, C::PolicyBlock),
            ),
            (
                554,
                None,
                "transaction failed",
                Verdict::Bounced(K::Soft, C::Other),
            ),
        ];
        for (code, enh, text, want) in cases {
            assert_eq!(classify(*code, *enh, text), *want, "{code} {enh:?} {text}");
        }
    }
}
