//! The I/O driver of one mail transaction on an open [`Connection`]: MAIL, RCPT,
//! DATA pipelined in one write when the server offers PIPELINING (else one by
//! one), then the body and the final reply; and RSET and QUIT. The bytes come
//! from, and the replies go back into, the pure `transaction` module.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::command;
use crate::connection::Connection;
use crate::envelope::Envelope;
use crate::error::{ClientError, Phase};
use crate::transaction::{self, Plan};
use mailroom_proto::Reply;

/// The body goes out in blocks of this size, each within the command timeout
/// (RFC 5321 §4.5.3.2.5: "DATA block").
const BODY_BLOCK: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Sends one message to the envelope's recipients.
    ///
    /// Returns one reply per recipient, in order: the RCPT reply when it was
    /// not 2xx, otherwise the reply after the data (or the refusal of DATA).
    /// A 421 anywhere ends the transaction: every recipient not already
    /// refused gets that 421, and the connection is no longer usable.
    ///
    /// Errors: [`ClientError::Mail`] when MAIL FROM is refused (the connection
    /// stays usable unless that was a 421); I/O errors, timeouts and protocol
    /// violations (after which the connection is not usable); and
    /// [`ClientError::InvalidInput`] / [`ClientError::Unsupported`] before
    /// anything is sent.
    pub async fn send(&mut self, env: &Envelope<'_>) -> Result<Vec<Reply>, ClientError> {
        let plan = transaction::plan(env, &self.ext)?;
        if self.needs_reset {
            self.reset().await?;
        }
        if self.ext.pipelining {
            self.send_pipelined(&plan).await
        } else {
            self.send_stepwise(&plan).await
        }
    }

    async fn send_pipelined(&mut self, plan: &Plan) -> Result<Vec<Reply>, ClientError> {
        let limit = self.timeouts.command;
        self.io.write(&plan.pipelined_batch(), limit).await?;
        let mail = self.io.read_reply(limit, Phase::Command).await?;
        if mail.code == 421 {
            return Err(ClientError::Mail(mail));
        }
        let mut rcpts = Vec::with_capacity(plan.rcpts.len());
        while rcpts.len() < plan.rcpts.len() {
            let reply = self.io.read_reply(limit, Phase::Command).await?;
            if reply.code == 421 {
                if !mail.is_positive() {
                    return Err(ClientError::Mail(mail));
                }
                return Ok(closing(rcpts, reply, plan.rcpts.len()));
            }
            rcpts.push(reply);
        }
        let data = self.io.read_reply(limit, Phase::Command).await?;
        if !mail.is_positive() {
            // The server answered the rest of the batch too; nothing is open.
            if data.code == 354 {
                self.finish_empty_data().await?;
            }
            return Err(ClientError::Mail(mail));
        }
        self.after_data_reply(plan, rcpts, data).await
    }

    async fn send_stepwise(&mut self, plan: &Plan) -> Result<Vec<Reply>, ClientError> {
        let mail = self.command(&plan.mail).await?;
        if !mail.is_positive() {
            return Err(ClientError::Mail(mail));
        }
        self.needs_reset = true;
        let mut rcpts = Vec::with_capacity(plan.rcpts.len());
        for line in &plan.rcpts {
            let reply = self.command(line).await?;
            if reply.code == 421 {
                return Ok(closing(rcpts, reply, plan.rcpts.len()));
            }
            rcpts.push(reply);
        }
        if !rcpts.iter().any(Reply::is_positive) {
            return Ok(transaction::outcomes(&rcpts, None));
        }
        let data = self.command(command::DATA).await?;
        self.after_data_reply(plan, rcpts, data).await
    }

    /// Given the RCPT replies and the reply to DATA: send the body (or, if no
    /// recipient was accepted but the server still said 354, an empty one)
    /// and fold the outcomes.
    async fn after_data_reply(
        &mut self,
        plan: &Plan,
        rcpts: Vec<Reply>,
        data: Reply,
    ) -> Result<Vec<Reply>, ClientError> {
        let accepted = rcpts.iter().any(Reply::is_positive);
        if data.code != 354 {
            // MAIL is still in effect unless the server is closing.
            self.needs_reset = data.code != 421;
            return Ok(transaction::outcomes(&rcpts, Some(&data)));
        }
        self.needs_reset = false;
        if !accepted {
            // RFC 2920 §3.1: DATA got 354 with no valid recipient; end it empty.
            self.finish_empty_data().await?;
            return Ok(transaction::outcomes(&rcpts, None));
        }
        for block in plan.data.chunks(BODY_BLOCK) {
            self.io.write(block, self.timeouts.command).await?;
        }
        let last = self
            .io
            .read_reply(self.timeouts.data_end, Phase::DataEnd)
            .await?;
        if last.is_positive() {
            self.messages_sent = self.messages_sent.saturating_add(1);
        }
        Ok(transaction::outcomes(&rcpts, Some(&last)))
    }

    async fn finish_empty_data(&mut self) -> Result<(), ClientError> {
        self.io
            .write(crate::body::DATA_END, self.timeouts.command)
            .await?;
        self.io
            .read_reply(self.timeouts.data_end, Phase::DataEnd)
            .await?;
        Ok(())
    }

    /// RSET: abandons any open transaction so the connection can be reused.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        let reply = self.command(command::RSET).await?;
        if !reply.is_positive() {
            self.io.set_broken();
            return Err(ClientError::Protocol(format!("RSET refused: {reply}")));
        }
        self.needs_reset = false;
        Ok(())
    }

    /// QUIT and close, ignoring errors; bounded by the command timeout.
    pub async fn quit(mut self) {
        if !self.io.is_broken() {
            let _ = self.command(command::QUIT).await;
        }
        self.io.shutdown(self.timeouts.command).await;
    }
}

/// Outcomes when the server answered 421 after `before.len()` RCPT replies:
/// refused recipients keep their reply, everyone else gets the 421.
fn closing(before: Vec<Reply>, reply: Reply, total: usize) -> Vec<Reply> {
    let mut rcpts = before;
    rcpts.resize(total, reply.clone());
    transaction::outcomes(&rcpts, Some(&reply))
}
