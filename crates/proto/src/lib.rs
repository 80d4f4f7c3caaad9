//! SMTP protocol code without I/O: command parsing, the reply catalogue, EHLO
//! capabilities, SASL PLAIN/LOGIN decoding and the DATA/BDAT body receivers with
//! dot-unstuffing and bare-CR/LF/NUL rejection. Sessions feed bytes in and write the
//! bytes that come out; the same code serves the server, the tests and the fuzzers.
//! `reply` is the one reply type of both sides: the server writes it from the
//! catalogue, the SMTP client parses server replies into it.
//! `classify` says what a reply means for a recipient (delivered, deferred, bounced
//! hard or soft, and why), for delivery and for bounce intake alike.

pub mod body;
pub mod classify;
pub mod command;
pub mod ehlo;
pub mod reply;
pub mod sasl;

pub use body::{BodyFault, BodyLimits, DataReceiver, DataStatus};
pub use command::{Command, CommandError, DsnRet, MailParams, RcptParams, parse_command};
pub use ehlo::Capabilities;
pub use reply::{EnhancedCode, Reply};
