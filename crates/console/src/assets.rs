//! The console's files, embedded at compile time, with their content types and
//! validators. Adding a file to `assets/` means adding one line to [`ASSETS`] (a test
//! checks that every file in the directory is listed, so none is forgotten).

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The path under `/ui/` (no leading slash).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A strong `ETag` (FNV-1a 64 of the bytes, computed at compile time), so browsers
    /// revalidate cheaply and always see a new build's files.
    pub etag: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!("../assets/", $path)),
            etag: {
                const HEX: [u8; 18] = etag_hex(fnv1a(include_bytes!(concat!("../assets/", $path))));
                match std::str::from_utf8(&HEX) {
                    Ok(s) => s,
                    Err(_) => panic!("etag is ASCII"),
                }
            },
        }
    };
}

/// Every file the console serves.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("logo.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("format.js", JS),
    asset!("pages/signin.js", JS),
    asset!("pages/overview.js", JS),
    asset!("pages/messages.js", JS),
    asset!("pages/message.js", JS),
    asset!("pages/domains.js", JS),
    asset!("pages/keys.js", JS),
    asset!("pages/webhooks.js", JS),
    asset!("pages/suppressions.js", JS),
    asset!("pages/quarantine.js", JS),
    asset!("pages/tenants.js", JS),
    asset!("pages/queue.js", JS),
    asset!("pages/nodes.js", JS),
];

/// The asset at `path` (relative to `/ui/`; empty means `index.html`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`.
const fn etag_hex(hash: u64) -> [u8; 18] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = DIGITS[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("assets dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    /// ` onclick=`, ` onload=`…: an attribute starting with "on" and made of letters.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        })
    }

    #[test]
    fn every_file_in_assets_is_embedded_and_nothing_else() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        walk(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn etags_differ_between_files_and_look_like_strong_validators() {
        let mut tags: Vec<&str> = ASSETS.iter().map(|a| a.etag).collect();
        for tag in &tags {
            assert!(tag.len() == 18 && tag.starts_with('"') && tag.ends_with('"'));
        }
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn no_asset_loads_anything_from_another_host_or_runs_inline_script() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("assets are UTF-8");
            for needle in ["http://", "https://", "//cdn", "eval(", "new Function"] {
                // SVG's XML namespace is an identifier, not a fetch.
                let text = text.replace("http://www.w3.org/2000/svg", "");
                assert!(!text.contains(needle), "{} contains {needle:?}", asset.path);
            }
            if asset.path.ends_with(".html") {
                assert!(
                    !text.contains("<script>"),
                    "inline script in {}",
                    asset.path
                );
                assert!(
                    !has_inline_handler(text),
                    "inline handler in {}",
                    asset.path
                );
                assert!(!text.contains("style="), "inline style in {}", asset.path);
            }
        }
    }
}
