//! MX rollup: a destination domain belongs to a site, named by its MX host set
//! (sorted, lower case), so every domain hosted at one provider shares one set of
//! limits; the provider is recognised by the MX hosts' suffix (see `profile`).

use crate::shaping::profile::Profiles;

/// A site: the MX host set a domain's mail goes to, and the provider behind it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Site {
    /// `mx:host1,host2` (sorted, lower case, no trailing dot); for a recognised
    /// provider `provider:<name>`, so all its customers' domains roll up into one.
    pub key: String,
    /// The recognised provider profile's name, if any.
    pub provider: Option<String>,
}

/// The site of a domain whose MX hosts are `hosts` (already resolved).
pub fn site_for(profiles: &Profiles, hosts: &[String]) -> Site {
    let mut norm: Vec<String> = hosts
        .iter()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    norm.sort();
    norm.dedup();
    match profiles.provider_for(&norm) {
        Some(p) => Site {
            key: format!("provider:{}", p.name),
            provider: Some(p.name.clone()),
        },
        None => Site {
            key: format!("mx:{}", norm.join(",")),
            provider: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn google_hosted_domains_roll_up_into_one_site() {
        let p = Profiles::builtin();
        let gmail = site_for(
            &p,
            &hosts(&[
                "gmail-smtp-in.l.google.com.",
                "alt1.gmail-smtp-in.l.google.com",
            ]),
        );
        let workspace = site_for(
            &p,
            &hosts(&["ASPMX.L.GOOGLE.COM", "alt2.aspmx.l.google.com"]),
        );
        assert_eq!(gmail, workspace);
        assert_eq!(gmail.provider.as_deref(), Some("google"));
        assert_eq!(gmail.key, "provider:google");
    }

    #[test]
    fn providers_recognised_by_suffix() {
        let p = Profiles::builtin();
        for (mx, name) in [
            ("example-com.mail.protection.outlook.com", "microsoft365"),
            ("hotmail-com.olc.protection.outlook.com", "outlook"),
            ("mx1.hotmail.com", "outlook"),
            ("mta5.am0.yahoodns.net", "yahoo"),
            ("mx01.mail.icloud.com", "apple"),
            ("mx00.gmx.net", "gmx"),
            ("mx-ha03.web.de", "gmx"),
            ("smtp-in.orange.fr", "orange"),
            ("mx1a1.comcast.net", "comcast"),
        ] {
            assert_eq!(
                site_for(&p, &hosts(&[mx])).provider.as_deref(),
                Some(name),
                "{mx}"
            );
        }
    }

    #[test]
    fn unknown_hosts_form_a_site_by_host_set_in_any_order() {
        let p = Profiles::builtin();
        let a = site_for(&p, &hosts(&["mx2.example.net", "MX1.example.net."]));
        let b = site_for(&p, &hosts(&["mx1.example.net", "mx2.example.net"]));
        assert_eq!(a, b);
        assert_eq!(a.key, "mx:mx1.example.net,mx2.example.net");
        assert_eq!(a.provider, None);
        // A suffix must match at a label boundary.
        assert_eq!(site_for(&p, &hosts(&["mx.notgoogle.com"])).provider, None);
    }
}
