//! Several transactions on one connection, pipelined (RFC 2920): the driver for
//! a message that goes to each recipient with its own envelope sender (VERP).
//!
//! The first group is MAIL, RCPT… and DATA in one write. Once DATA is answered
//! 354, the body, its final `.` and the *next* transaction's MAIL, RCPT… DATA go
//! out in one write (RFC 2920 §3.1: the message content may be the first
//! "command" of a group), so N transactions cost N + 1 round trips instead of
//! 3N. A transaction that ends cleanly (accepted or refused after the data) is
//! followed by the next one with no RSET; RSET goes out only after a transaction
//! that was left open (DATA refused while MAIL stood), pipelined in front of the
//! next group. Each transaction keeps its own outcome. A server without
//! PIPELINING gets the transactions one by one through [`Connection::send`].

use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::DATA_END;
use crate::command;
use crate::connection::Connection;
use crate::envelope::Envelope;
use crate::error::{ClientError, Phase};
use crate::transaction::{self, Plan};
use mailroom_proto::Reply;

/// Bodies up to this size go out in the same write as the next group.
const JOIN_LIMIT: usize = 64 * 1024;

/// The outcome of one transaction of a batch, as [`Connection::send`] gives it.
pub type TransactionResult = Result<Vec<Reply>, ClientError>;

/// How one pipelined transaction ended, for the one after it.
enum Next {
    /// The transaction is closed and the next group is already written.
    Written,
    /// The transaction is closed; the next group still has to be written.
    Clean,
    /// MAIL still stands (DATA was refused): RSET goes in front of the next group.
    Reset,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Sends each envelope as its own transaction on this connection, in order,
    /// and returns one result per envelope (what [`send`](Self::send) would have
    /// returned for it). Once the connection fails, the transactions after the
    /// failing one were not sent: they get an error ([`ClientError::Io`], or the
    /// server's 421 as [`ClientError::Mail`]) and may be tried again elsewhere.
    pub async fn send_batch(&mut self, envs: &[Envelope<'_>]) -> Vec<TransactionResult> {
        if !self.ext.pipelining || envs.len() < 2 {
            let mut out = Vec::with_capacity(envs.len());
            for env in envs {
                if !self.is_usable() {
                    out.push(Err(not_sent(out.last())));
                    continue;
                }
                out.push(self.send(env).await);
            }
            return out;
        }
        let plans: Vec<Result<Plan, ClientError>> = envs
            .iter()
            .map(|e| transaction::plan(e, &self.ext))
            .collect();
        let mut out: Vec<Option<TransactionResult>> = Vec::with_capacity(envs.len());
        let order: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].is_ok()).collect();
        let mut pending: Vec<u8> = Vec::new();
        let mut rset = self.needs_reset;
        if rset {
            pending.extend_from_slice(command::RSET);
        }
        let mut written = false;
        let mut failed: Option<ClientError> = None;
        out.resize_with(plans.len(), || None);
        for (pos, &i) in order.iter().enumerate() {
            let Ok(plan) = &plans[i] else { continue };
            if let Some(e) = &failed {
                out[i] = Some(Err(again(e)));
                continue;
            }
            if !written {
                pending.extend_from_slice(&plan.pipelined_batch());
            }
            let next = order
                .get(pos + 1)
                .and_then(|&j| plans[j].as_ref().ok())
                .map(Plan::pipelined_batch);
            match self
                .pipelined_one(plan, std::mem::take(&mut pending), rset, next)
                .await
            {
                Ok((result, after)) => {
                    out[i] = Some(result);
                    rset = matches!(after, Next::Reset);
                    written = matches!(after, Next::Written);
                    if rset {
                        pending.extend_from_slice(command::RSET);
                    }
                }
                Err(e) => {
                    failed = Some(again(&e));
                    out[i] = Some(Err(e));
                }
            }
        }
        if rset && failed.is_none() {
            // Nothing followed the open transaction: the next send starts with RSET.
            self.needs_reset = true;
        }
        plans
            .into_iter()
            .zip(out)
            .map(|(plan, result)| match plan {
                Err(e) => Err(e),
                Ok(_) => result.unwrap_or_else(|| Err(not_sent(None))),
            })
            .collect()
    }

    /// Writes `pending` (an RSET and/or this transaction's group, unless already
    /// sent), reads the replies of one transaction, sends its body together with
    /// `next` (the following group), and says how the transaction ended. An `Err`
    /// means the connection is no longer usable.
    async fn pipelined_one(
        &mut self,
        plan: &Plan,
        pending: Vec<u8>,
        rset: bool,
        next: Option<Vec<u8>>,
    ) -> Result<(TransactionResult, Next), ClientError> {
        let limit = self.timeouts.command;
        if !pending.is_empty() {
            self.io.write(&pending, limit).await?;
        }
        if rset {
            let reply = self.io.read_reply(limit, Phase::Command).await?;
            if !reply.is_positive() {
                self.io.set_broken();
                return Err(ClientError::Protocol(format!("RSET refused: {reply}")));
            }
            self.needs_reset = false;
        }
        let mail = self.io.read_reply(limit, Phase::Command).await?;
        if mail.code == 421 {
            return Err(ClientError::Mail(mail));
        }
        let mut rcpts = Vec::with_capacity(plan.rcpts.len());
        while rcpts.len() < plan.rcpts.len() {
            let reply = self.io.read_reply(limit, Phase::Command).await?;
            if reply.code == 421 {
                return Err(ClientError::Mail(reply));
            }
            rcpts.push(reply);
        }
        let data = self.io.read_reply(limit, Phase::Command).await?;
        if data.code == 421 {
            return Err(ClientError::Mail(data));
        }
        let accepted = mail.is_positive() && rcpts.iter().any(Reply::is_positive);
        if data.code != 354 {
            // Nothing was sent after DATA: the next group goes out on its own, after
            // an RSET if MAIL still stands.
            let after = if mail.is_positive() {
                Next::Reset
            } else {
                Next::Clean
            };
            let result = if mail.is_positive() {
                Ok(transaction::outcomes(&rcpts, Some(&data)))
            } else {
                Err(ClientError::Mail(mail))
            };
            return Ok((result, after));
        }
        // 354: the content (or, with no valid recipient, an empty one) ends the
        // transaction; the next group rides along in the same write.
        let content: &[u8] = if accepted { &plan.data } else { DATA_END };
        let has_next = next.is_some();
        self.write_content(content, next).await?;
        let last = self
            .io
            .read_reply(self.timeouts.data_end, Phase::DataEnd)
            .await?;
        if last.code == 421 {
            return Err(ClientError::Mail(last));
        }
        let after = if has_next { Next::Written } else { Next::Clean };
        if !mail.is_positive() {
            return Ok((Err(ClientError::Mail(mail)), after));
        }
        if !accepted {
            return Ok((Ok(transaction::outcomes(&rcpts, None)), after));
        }
        if last.is_positive() {
            self.messages_sent = self.messages_sent.saturating_add(1);
        }
        Ok((Ok(transaction::outcomes(&rcpts, Some(&last))), after))
    }

    /// The content and then the next group: one write when the content is small.
    async fn write_content(
        &mut self,
        content: &[u8],
        next: Option<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let limit = self.timeouts.command;
        let next = next.unwrap_or_default();
        if content.len() <= JOIN_LIMIT {
            let mut buf = Vec::with_capacity(content.len() + next.len());
            buf.extend_from_slice(content);
            buf.extend_from_slice(&next);
            return self.io.write(&buf, limit).await;
        }
        for block in content.chunks(JOIN_LIMIT) {
            self.io.write(block, limit).await?;
        }
        if !next.is_empty() {
            self.io.write(&next, limit).await?;
        }
        Ok(())
    }
}

/// The error for a transaction that was not sent because an earlier one broke
/// the connection.
fn again(e: &ClientError) -> ClientError {
    match e {
        ClientError::Mail(r) if r.code == 421 => ClientError::Mail(r.clone()),
        ClientError::Timeout(p) => ClientError::Timeout(*p),
        other => not_sent_because(other),
    }
}

fn not_sent(prev: Option<&TransactionResult>) -> ClientError {
    match prev {
        Some(Err(e)) => again(e),
        _ => ClientError::Io(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "not sent: the connection is no longer usable",
        )),
    }
}

fn not_sent_because(e: &ClientError) -> ClientError {
    ClientError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        format!("not sent: an earlier transaction on the connection failed ({e})"),
    ))
}
