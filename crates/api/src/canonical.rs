//! The fingerprint of a request body for `Idempotency-Key`: SHA-256 of the body's
//! canonical JSON (object keys sorted at every depth, no insignificant whitespace), so
//! the same request sent again with its keys in another order or re-indented is the
//! same request. A body that is not JSON is fingerprinted as its raw bytes (it is
//! refused as malformed JSON anyway).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of the canonical form of `body`.
pub fn fingerprint(body: &[u8]) -> String {
    let digest = match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let mut out = Vec::with_capacity(body.len());
            write_canonical(&value, &mut out);
            Sha256::digest(&out)
        }
        Err(_) => Sha256::digest(body),
    };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `v` with sorted object keys; scalars as serde_json writes them.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(v: &Value, out: &mut Vec<u8>) {
    // Serialising a scalar JSON value into a Vec cannot fail.
    if let Ok(bytes) = serde_json::to_vec(v) {
        out.extend_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = br#"{"from":"a@x.test","to":["b@y.test"],"meta":{"k":1,"j":[{"z":1,"a":2}]}}"#;
        let b = br#"{ "meta": {"j": [{"a": 2, "z": 1}], "k": 1},
                      "to": ["b@y.test"], "from": "a@x.test" }"#;
        assert_eq!(fingerprint(a), fingerprint(b));
    }

    #[test]
    fn values_and_array_order_do_matter() {
        let a = br#"{"to":["a@x.test","b@x.test"]}"#;
        let b = br#"{"to":["b@x.test","a@x.test"]}"#;
        let c = br#"{"to":["a@x.test","b@x.test"],"subject":"x"}"#;
        assert_ne!(fingerprint(a), fingerprint(b));
        assert_ne!(fingerprint(a), fingerprint(c));
        assert_ne!(fingerprint(br#"{"n":1}"#), fingerprint(br#"{"n":"1"}"#));
    }

    #[test]
    fn non_json_is_hashed_as_bytes() {
        assert_ne!(fingerprint(b"{oops"), fingerprint(b"{oops "));
    }
}
