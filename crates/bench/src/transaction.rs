//! One mail transaction over an open session: MAIL FROM, RCPT TO ×R and DATA
//! (in one write when the server pipelines, else one by one), then the
//! dot-stuffed body and its final reply. It classifies the outcome; counting
//! and timing belong to `worker`.

use anyhow::Context;

use crate::session::{Reply, Session};

/// How one message ended, short of an I/O or protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The final reply after the body was 2xx.
    Accepted,
    /// Some reply refused the message; `sample` names the stage and reply.
    /// `close` is set when the server said 421 (it is closing the session).
    Rejected { sample: String, close: bool },
}

/// Submits `message` (not yet dot-stuffed) from `from` to `rcpts` over `s`.
pub async fn submit(
    s: &mut Session,
    from: &str,
    rcpts: &[String],
    message: &[u8],
) -> anyhow::Result<Outcome> {
    let mail = format!("MAIL FROM:<{from}>\r\n");
    let rcpt_lines: Vec<String> = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();

    let (mail_reply, rcpt_replies, data_reply) = if s.pipelining {
        let mut batch = mail.into_bytes();
        rcpt_lines
            .iter()
            .for_each(|l| batch.extend_from_slice(l.as_bytes()));
        batch.extend_from_slice(b"DATA\r\n");
        s.send(&batch).await?;
        let mail_reply = s.reply().await.context("MAIL FROM reply")?;
        if mail_reply.code == 421 {
            return Ok(rejected("MAIL FROM", &mail_reply));
        }
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            let reply = s.reply().await.context("RCPT TO reply")?;
            if reply.code == 421 {
                return Ok(rejected("RCPT TO", &reply));
            }
            rcpt_replies.push(reply);
        }
        let data_reply = s.reply().await.context("DATA reply")?;
        (mail_reply, rcpt_replies, Some(data_reply))
    } else {
        let mail_reply = s.command(mail.as_bytes()).await.context("MAIL FROM")?;
        if !mail_reply.is_positive() {
            return reset(s, "MAIL FROM", &mail_reply).await;
        }
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        for line in &rcpt_lines {
            let reply = s.command(line.as_bytes()).await.context("RCPT TO")?;
            if reply.code == 421 {
                return Ok(rejected("RCPT TO", &reply));
            }
            rcpt_replies.push(reply);
        }
        (mail_reply, rcpt_replies, None)
    };

    let accepted_rcpts = rcpt_replies.iter().filter(|r| r.is_positive()).count();
    let data_reply = match data_reply {
        Some(r) => r,
        None if mail_reply.is_positive() && accepted_rcpts > 0 => {
            s.command(b"DATA\r\n").await.context("DATA")?
        }
        None => {
            return reset(
                s,
                "RCPT TO",
                first_refusal(&rcpt_replies).unwrap_or(&mail_reply),
            )
            .await;
        }
    };

    if data_reply.code != 354 {
        let (stage, reply) = if !mail_reply.is_positive() {
            ("MAIL FROM", &mail_reply)
        } else if let Some(r) = first_refusal(&rcpt_replies).filter(|_| accepted_rcpts == 0) {
            ("RCPT TO", r)
        } else {
            ("DATA", &data_reply)
        };
        return reset(s, stage, reply).await;
    }
    if !mail_reply.is_positive() || accepted_rcpts == 0 {
        // The server opened DATA although nothing was accepted (RFC 2920 §3.1):
        // end it empty rather than send a body nobody will get.
        let end = s.command(b".\r\n").await.context("empty DATA end")?;
        let refusal = first_refusal(&rcpt_replies).unwrap_or(&mail_reply);
        let close = end.code == 421;
        return Ok(Outcome::Rejected {
            sample: format!("RCPT TO: {}", refusal.summary()),
            close,
        });
    }

    let final_reply = s
        .command(&crate::message::dot_stuff(message))
        .await
        .context("end of DATA")?;
    if final_reply.is_positive() {
        Ok(Outcome::Accepted)
    } else {
        Ok(rejected("end of DATA", &final_reply))
    }
}

fn first_refusal(replies: &[Reply]) -> Option<&Reply> {
    replies.iter().find(|r| !r.is_positive())
}

fn rejected(stage: &str, reply: &Reply) -> Outcome {
    Outcome::Rejected {
        sample: format!("{stage}: {}", reply.summary()),
        close: reply.code == 421,
    }
}

/// Records a refusal before DATA and resets the transaction so the session can
/// carry on (unless the server is closing it).
async fn reset(s: &mut Session, stage: &str, reply: &Reply) -> anyhow::Result<Outcome> {
    let outcome = rejected(stage, reply);
    if reply.code != 421 {
        s.command(b"RSET\r\n").await.context("RSET")?;
    }
    Ok(outcome)
}
