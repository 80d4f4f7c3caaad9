//! Fuzz target: the reply parser the SMTP client uses (`mailroom_proto::reply::parse_reply`
//! and `ReplyParser` fed line by line), i.e. whatever a hostile exchanger sends.
//! Must never panic; a reply has a code in 200..=599, an enhanced code whose class
//! matches it, text without control characters (safe to log) and stays within the
//! line bounds; `parse_reply` never claims more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_proto::reply::{MAX_REPLY_LINES, Reply, ReplyParser, parse_reply};

fn check(reply: &Reply) {
    assert!((200..=599).contains(&reply.code), "{reply:?}");
    if let Some((class, _, _)) = reply.enhanced {
        assert_eq!(u16::from(class), reply.code / 100, "{reply:?}");
    }
    assert!(
        !reply
            .lines
            .iter()
            .any(|l| l.chars().any(|c| c.is_control() && c != '\t')),
        "{reply:?}"
    );
    assert!(reply.lines.len() <= MAX_REPLY_LINES, "{reply:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, used))) = parse_reply(data) {
        assert!(used <= data.len());
        check(&reply);
    }
    let mut parser = ReplyParser::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        match parser.push_line(line) {
            Ok(Some(reply)) => check(&reply),
            Ok(None) => {}
            Err(_) => parser = ReplyParser::new(),
        }
    }
});
