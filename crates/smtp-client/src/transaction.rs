//! One mail transaction, without I/O: turning an [`Envelope`] into the bytes to
//! send given the server's [`Extensions`], and folding the replies into one
//! outcome per recipient. The driver in `send.rs` moves these bytes.

use crate::body::{DATA_END, prepare_body};
use crate::command::{self, MailParams};
use crate::ehlo::Extensions;
use crate::envelope::Envelope;
use crate::error::ClientError;
use mailroom_proto::Reply;

/// The bytes of one transaction, ready to write.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The MAIL FROM line.
    pub mail: Vec<u8>,
    /// One RCPT TO line per recipient, in order.
    pub rcpts: Vec<Vec<u8>>,
    /// The dot-stuffed CRLF body followed by the final `.` line.
    pub data: Vec<u8>,
}

impl Plan {
    /// MAIL, every RCPT and DATA as one buffer (RFC 2920 §3.1: DATA is the
    /// last command of a pipelined group).
    pub fn pipelined_batch(&self) -> Vec<u8> {
        let len = self.mail.len() + self.rcpts.iter().map(Vec::len).sum::<usize>();
        let mut batch = Vec::with_capacity(len + command::DATA.len());
        batch.extend_from_slice(&self.mail);
        for rcpt in &self.rcpts {
            batch.extend_from_slice(rcpt);
        }
        batch.extend_from_slice(command::DATA);
        batch
    }
}

pub(crate) fn plan(env: &Envelope<'_>, ext: &Extensions) -> Result<Plan, ClientError> {
    if env.recipients.is_empty() {
        return Err(ClientError::InvalidInput("no recipients".to_owned()));
    }
    if env.smtputf8 && !ext.smtputf8 {
        return Err(ClientError::Unsupported("SMTPUTF8"));
    }
    if env.require_tls && !ext.require_tls {
        return Err(ClientError::Unsupported("REQUIRETLS"));
    }
    let mut data = prepare_body(env.body);
    // RFC 1870 §6: a limit of 0 means "no fixed maximum"; otherwise a message larger
    // than the announced limit is not offered at all (no wasted transfer).
    if let Some(limit) = ext.size.filter(|l| *l > 0)
        && data.len() as u64 > limit
    {
        return Err(ClientError::TooLarge {
            size: data.len() as u64,
            limit,
        });
    }
    let params = MailParams {
        size: ext.size.map(|_| data.len()),
        eight_bit_mime: env.eight_bit && ext.eight_bit_mime,
        smtputf8: env.smtputf8,
        ret: env.dsn_ret.filter(|_| ext.dsn),
        envid: env.dsn_envid.filter(|_| ext.dsn),
        require_tls: env.require_tls,
    };
    data.extend_from_slice(DATA_END);
    let mail = command::mail_from(env.mail_from, &params).map_err(ClientError::InvalidInput)?;
    let rcpts = env
        .recipients
        .iter()
        .map(|r| command::rcpt_to(r.address, r.notify, r.orcpt, ext.dsn, env.smtputf8))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClientError::InvalidInput)?;
    Ok(Plan { mail, rcpts, data })
}

/// One outcome per recipient: its RCPT reply when that was not 2xx, else
/// `last` (the reply after the data, or the refusal of DATA itself).
pub(crate) fn outcomes(rcpt_replies: &[Reply], last: Option<&Reply>) -> Vec<Reply> {
    rcpt_replies
        .iter()
        .map(|rcpt| match last {
            Some(last) if rcpt.is_positive() => last.clone(),
            _ => rcpt.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Rcpt;

    fn ext(text: &str) -> Extensions {
        Extensions::parse(text)
    }

    #[test]
    fn plan_uses_only_offered_extensions() {
        let rcpts = [Rcpt {
            address: "a@x",
            notify: Some("FAILURE"),
            orcpt: Some("rfc822;a@x"),
        }];
        let env = Envelope {
            eight_bit: true,
            dsn_ret: Some("HDRS"),
            dsn_envid: Some("q1"),
            ..Envelope::new("s@y", &rcpts, b"Subject: x\n\n.hi\n")
        };
        let bare = plan(&env, &ext("x")).unwrap();
        assert_eq!(bare.mail, b"MAIL FROM:<s@y>\r\n");
        assert_eq!(bare.rcpts, vec![b"RCPT TO:<a@x>\r\n".to_vec()]);
        assert_eq!(bare.data, b"Subject: x\r\n\r\n..hi\r\n.\r\n");

        let full = plan(&env, &ext("x\nSIZE 100\n8BITMIME\nDSN")).unwrap();
        assert_eq!(
            full.mail,
            b"MAIL FROM:<s@y> SIZE=20 BODY=8BITMIME RET=HDRS ENVID=q1\r\n"
        );
        assert_eq!(
            full.rcpts[0],
            b"RCPT TO:<a@x> NOTIFY=FAILURE ORCPT=rfc822;a@x\r\n"
        );
        assert_eq!(
            full.pipelined_batch(),
            b"MAIL FROM:<s@y> SIZE=20 BODY=8BITMIME RET=HDRS ENVID=q1\r\n\
              RCPT TO:<a@x> NOTIFY=FAILURE ORCPT=rfc822;a@x\r\nDATA\r\n"
        );
    }

    #[test]
    fn requiretls_only_to_servers_offering_it() {
        let rcpts = [Rcpt::new("a@x")];
        let env = Envelope {
            require_tls: true,
            ..Envelope::new("s@y", &rcpts, b"x")
        };
        assert!(matches!(
            plan(&env, &ext("x\nDSN")),
            Err(ClientError::Unsupported("REQUIRETLS"))
        ));
        let ok = plan(&env, &ext("x\nREQUIRETLS")).unwrap();
        assert_eq!(ok.mail, b"MAIL FROM:<s@y> REQUIRETLS\r\n");
    }

    #[test]
    fn plan_refuses_what_cannot_be_sent() {
        let env = Envelope::new("s@y", &[], b"x");
        assert!(matches!(
            plan(&env, &ext("x")),
            Err(ClientError::InvalidInput(_))
        ));

        let rcpts = [Rcpt::new("ü@x")];
        let env = Envelope {
            smtputf8: true,
            ..Envelope::new("s@y", &rcpts, b"x")
        };
        assert!(matches!(
            plan(&env, &ext("x")),
            Err(ClientError::Unsupported("SMTPUTF8"))
        ));
        let ok = plan(&env, &ext("x\nSMTPUTF8")).unwrap();
        assert_eq!(ok.mail, b"MAIL FROM:<s@y> SMTPUTF8\r\n");

        let rcpts = [Rcpt::new("a@x>\r\nDATA")];
        let env = Envelope::new("s@y", &rcpts, b"x");
        assert!(matches!(
            plan(&env, &ext("x")),
            Err(ClientError::InvalidInput(_))
        ));
    }

    #[test]
    fn plan_refuses_a_message_over_the_peer_size_limit() {
        let rcpts = [Rcpt::new("a@x")];
        let body = b"Subject: x\r\n\r\n0123456789\r\n";
        let env = Envelope::new("s@y", &rcpts, body);
        // 26 bytes on the wire: exactly at the limit is fine, one byte less is not.
        let at = plan(&env, &ext("x\nSIZE 26")).unwrap();
        assert_eq!(at.mail, b"MAIL FROM:<s@y> SIZE=26\r\n");
        match plan(&env, &ext("x\nSIZE 25")) {
            Err(ClientError::TooLarge { size, limit }) => assert_eq!((size, limit), (26, 25)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // SIZE without a number (or 0) announces no fixed limit.
        assert!(plan(&env, &ext("x\nSIZE")).is_ok());
        assert!(plan(&env, &ext("x\nSIZE 0")).is_ok());
    }

    #[test]
    fn outcomes_per_recipient() {
        let ok = Reply::new(250, (2, 1, 5), "ok");
        let unknown = Reply::new(550, (5, 1, 1), "unknown");
        let later = Reply::new(451, (4, 2, 0), "later");
        let queued = Reply::new(250, (2, 0, 0), "queued");
        let got = outcomes(
            &[ok.clone(), unknown.clone(), later.clone(), ok.clone()],
            Some(&queued),
        );
        assert_eq!(
            got,
            vec![queued.clone(), unknown.clone(), later.clone(), queued]
        );
        assert_eq!(
            outcomes(&[unknown.clone(), later.clone()], None),
            vec![unknown, later]
        );
    }
}
