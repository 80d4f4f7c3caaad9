"""Independent verification of mailroom-auth's output: dkimpy verifies the DKIM
signatures and the ARC chain, pyspf evaluates the SPF records that
`expected_records` produces. The fixtures (messages + DNS TXT records) are written
by the Rust example `sign_fixtures`, built and run once per session; DNS is served
from the written records, never from the network.

Run: python3 -m pytest -q tests/auth
"""

import pathlib
import subprocess

import dkim
import pytest
import spf

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory):
    out = tmp_path_factory.mktemp("auth-fixtures")
    subprocess.run(
        [
            "cargo",
            "run",
            "--quiet",
            "--ignore-rust-version",
            "-p",
            "mailroom-auth",
            "--example",
            "sign_fixtures",
            "--",
            str(out),
        ],
        cwd=REPO,
        check=True,
        timeout=900,
    )
    return out


def _lines(path):
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def txt_records(fixtures):
    records = {}
    for name, value in _lines(fixtures / "dns.txt"):
        records.setdefault(name.lower().rstrip("."), []).append(value)
    return records


@pytest.fixture(scope="session")
def manifest(fixtures):
    return [tuple(row) for row in _lines(fixtures / "manifest.txt")]


@pytest.fixture(scope="session")
def dnsfunc(txt_records):
    """dkimpy's DNS hook: the first TXT record at the name, as bytes, or None."""
    asked = []

    def lookup(name, timeout=5):
        key = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        asked.append(key)
        found = txt_records.get(key)
        return found[0].encode() if found else None

    lookup.asked = asked
    return lookup


def _messages(fixtures, manifest, *expects):
    return [(f, (fixtures / f).read_bytes()) for f, e, _ in manifest if e in expects]


def _signature_count(message):
    headers = message.split(b"\r\n\r\n", 1)[0]
    return sum(
        1 for line in headers.split(b"\r\n") if line.lower().startswith(b"dkim-signature:")
    )


def test_manifest_covers_every_case(manifest):
    files = {f for f, _, _ in manifest}
    expects = {e for _, e, _ in manifest}
    assert {"pass", "fail", "arc", "arcfail"} <= expects
    for needed in [
        "ed25519_plain.eml",
        "rsa_plain.eml",
        "both_attachment.eml",
        "rsa_8bit_folded.eml",
        "ed25519_8bit_folded.eml",
        "arc_forwarded.eml",
        "tampered_body_rsa.eml",
    ]:
        assert needed in files


def test_every_signature_verifies(fixtures, manifest, dnsfunc):
    messages = _messages(fixtures, manifest, "pass")
    assert len(messages) >= 6
    for name, message in messages:
        count = _signature_count(message)
        assert count >= 1, name
        d = dkim.DKIM(message)
        for idx in range(count):
            assert d.verify(idx=idx, dnsfunc=dnsfunc), f"{name}: signature {idx} did not verify"
        # dkimpy really looked the keys up in our records.
        assert any(a.endswith("._domainkey.example.test") for a in dnsfunc.asked)


def test_both_algorithms_and_oversigned_from(fixtures):
    both = (fixtures / "both_attachment.eml").read_bytes()
    sigs = [
        dkim.util.parse_tag_value(value)
        for name, value in dkim.rfc822_parse(both)[0]
        if name.lower() == b"dkim-signature"
    ]
    assert [s[b"a"] for s in sigs] == [b"ed25519-sha256", b"rsa-sha256"]
    for s in sigs:
        assert s[b"c"] == b"relaxed/relaxed"
        signed = [h.strip().lower() for h in s[b"h"].split(b":")]
        # From listed once more than present: over-signed.
        assert signed.count(b"from") == 2, signed
        assert b"reply-to" in signed and b"cc" in signed


def _verifies(d, idx, dnsfunc):
    """dkimpy's verdict on one signature; its validation errors count as failure."""
    try:
        return d.verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.DKIMException:
        return False


def test_tampered_messages_fail(fixtures, manifest, dnsfunc):
    messages = _messages(fixtures, manifest, "fail")
    assert len(messages) >= 3
    for name, message in messages:
        count = _signature_count(message)
        assert count >= 1, name
        d = dkim.DKIM(message)
        results = [_verifies(d, i, dnsfunc) for i in range(count)]
        assert not any(results), f"{name} verified although it was changed"


def test_a_wrong_key_fails(fixtures, txt_records):
    """The verifier is not lenient: with the other key published, nothing passes."""
    message = (fixtures / "rsa_plain.eml").read_bytes()
    ed_key = txt_records["mr202607e._domainkey.example.test"][0]
    other_rsa = None
    for name, values in txt_records.items():
        if name == "arc1._domainkey.op.test":
            other_rsa = values[0]
    assert other_rsa
    swapped = lambda name, timeout=5: other_rsa.encode()  # noqa: E731
    assert not _verifies(dkim.DKIM(message), 0, swapped)
    assert ed_key.startswith("v=DKIM1; k=ed25519; p=")


def test_arc_chain_verifies(fixtures, manifest, dnsfunc):
    messages = _messages(fixtures, manifest, "arc")
    assert messages
    for name, message in messages:
        cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
        assert cv == dkim.CV_Pass, f"{name}: {cv} {reason} {results}"
        assert results and results[0]["instance"] == 1
        # The tenant's DKIM signatures survive the seal.
        d = dkim.DKIM(message)
        assert d.verify(idx=0, dnsfunc=dnsfunc)


def test_tampered_arc_chain_fails(fixtures, manifest, dnsfunc):
    messages = _messages(fixtures, manifest, "arcfail")
    assert messages
    for name, message in messages:
        cv, _results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
        assert cv == dkim.CV_Fail, f"{name}: {cv} {reason}"


@pytest.fixture
def spf_dns(monkeypatch, txt_records):
    """pyspf's DNS hook, answering TXT from the fixture records (no network)."""

    def lookup(name, qtype, tcpfallback=True, timeout=30):
        key = name.lower().rstrip(".")
        if qtype in ("TXT", "SPF"):
            return [((name, qtype), [v.encode()]) for v in txt_records.get(key, [])]
        return []

    monkeypatch.setattr(spf, "DNSLookup", lookup)


def test_spf_records_evaluate(fixtures, spf_dns):
    cases = _lines(fixtures / "spf.txt")
    assert len(cases) >= 4
    for domain, ip, expected in cases:
        result, _explanation = spf.check2(i=ip, s=f"bounce@{domain}", h="mta.example.test")
        assert result == expected, f"{domain} from {ip}: {result}, expected {expected}"


def test_spf_is_not_vacuous(spf_dns):
    """A domain without records is 'none', so a pass above came from a record."""
    result, _ = spf.check2(i="127.0.0.1", s="bounce@unknown.test", h="mta.example.test")
    assert result == "none"
