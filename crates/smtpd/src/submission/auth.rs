//! SMTP AUTH (RFC 4954) with PLAIN and LOGIN, offered and accepted only under TLS.
//! Failures are counted per session (the session is closed after a few) and per
//! client address by the policy's limiter (lockout across sessions).

use super::Submission;
use crate::session::{Conn, Core, Flow, Line, stopped};
use mailroom_policy::AuthVerdict;
use mailroom_proto::command::Mechanism;
use mailroom_proto::sasl::{self, SaslError};
use mailroom_proto::{Reply, reply};
use tokio::io::{AsyncRead, AsyncWrite};

impl Submission {
    pub(super) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        core: &mut Core,
        mechanism: Mechanism,
        initial: Option<String>,
        conn: &mut Conn<S>,
    ) -> Flow {
        let refusal = if core.helo.is_none() {
            Some(reply::need_ehlo())
        } else if core.tls.is_none() {
            Some(reply::auth_requires_tls())
        } else if self.tenant.is_some() {
            Some(reply::auth_already())
        } else if self.txn.is_some() {
            Some(reply::auth_in_transaction())
        } else {
            None
        };
        if let Some(r) = refusal {
            conn.reply(&r);
            return Flow::Continue;
        }
        let credentials = match mechanism {
            Mechanism::Plain => self.plain(initial, conn).await,
            Mechanism::Login => self.login(initial, conn).await,
            Mechanism::Other => Err(Some(reply::auth_unsupported_mechanism())),
        };
        let (username, password) = match credentials {
            Ok(c) => c,
            Err(Some(r)) => {
                conn.reply(&r);
                // A malformed, cancelled or mismatched exchange (no password was
                // checked) counts as a protocol error, so AUTH garbage cannot keep a
                // session open for ever (`smtp.max_errors`).
                return core.error(conn);
            }
            Err(None) => return Flow::Close,
        };
        match core
            .shared
            .policy
            .authenticate(core.peer.ip(), &username, &password)
            .await
        {
            AuthVerdict::Accepted(ctx) => {
                tracing::debug!(peer = %core.peer, tenant = %ctx.tenant_name, "authenticated");
                self.tenant = Some(ctx);
                conn.reply(&reply::auth_ok());
                Flow::Continue
            }
            AuthVerdict::Rejected => {
                tracing::info!(peer = %core.peer, username = %username.escape_debug(), "authentication failed");
                self.auth_failures += 1;
                conn.reply(&reply::auth_failed());
                if self.auth_failures >= core.shared.config.max_auth_failures {
                    conn.reply(&reply::too_many_errors());
                    return Flow::Close;
                }
                Flow::Continue
            }
            AuthVerdict::LockedOut => {
                tracing::warn!(peer = %core.peer, "authentication locked out");
                conn.reply(&reply::auth_locked_out());
                Flow::Close
            }
        }
    }

    /// Reads one SASL continuation line after sending `prompt`. `Err(None)` means the
    /// connection is gone.
    async fn sasl_step<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        prompt: &'static str,
        conn: &mut Conn<S>,
    ) -> Result<String, Option<Reply>> {
        conn.reply(&reply::auth_challenge(prompt));
        match conn.read_line(sasl::MAX_RESPONSE + 2).await {
            Ok(Line::Complete(bytes)) => {
                let text = String::from_utf8(bytes).map_err(|_| Some(reply::auth_malformed()))?;
                Ok(text.trim_end_matches(['\r', '\n']).to_string())
            }
            Ok(Line::TooLong) => Err(Some(reply::auth_malformed())),
            Err(stop) => {
                stopped(conn, stop).await;
                Err(None)
            }
        }
    }

    async fn plain<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        initial: Option<String>,
        conn: &mut Conn<S>,
    ) -> Result<(String, String), Option<Reply>> {
        let response = match initial {
            Some(text) if text == "=" => String::new(),
            Some(text) => text,
            None => self.sasl_step("", conn).await?,
        };
        sasl::decode_plain(&response)
            .map(|c| (c.username, c.password))
            .map_err(|e| Some(sasl_reply(e)))
    }

    async fn login<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        initial: Option<String>,
        conn: &mut Conn<S>,
    ) -> Result<(String, String), Option<Reply>> {
        let user_b64 = match initial {
            Some(text) => text,
            None => self.sasl_step(sasl::LOGIN_USERNAME_PROMPT, conn).await?,
        };
        let username = sasl::decode_login_step(&user_b64).map_err(|e| Some(sasl_reply(e)))?;
        let pass_b64 = self.sasl_step(sasl::LOGIN_PASSWORD_PROMPT, conn).await?;
        let password = sasl::decode_login_step(&pass_b64).map_err(|e| Some(sasl_reply(e)))?;
        Ok((username, password))
    }
}

fn sasl_reply(e: SaslError) -> Reply {
    match e {
        SaslError::Malformed => reply::auth_malformed(),
        SaslError::Cancelled => reply::auth_cancelled(),
        SaslError::AuthzidMismatch => reply::auth_failed(),
    }
}
