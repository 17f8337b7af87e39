//! The flags `czload verify` and `czload undo` share: the server, the credentials and how
//! to send (the load's own flags, with the load's defaults and checks).
//!
//! They are turned into a `czload load` command line and read by the load's own config
//! code (`config::send_config`), so a flag means, defaults and is refused exactly as in a
//! load; only the sending flags exist here, and the process comes from the results log.

use crate::cli::LoadArgs;
use crate::error::{Error, Result};
use crate::op::OpKind;
use crate::send::SendConfig;
use clap::{Args, FromArgMatches};
use std::path::PathBuf;

/// Where and how to send, as in `czload load`.
#[derive(Debug, Clone, Args)]
pub struct SendFlags {
    /// Corezoid API base URL.
    #[arg(
        long,
        env = "COREZOID_URL",
        default_value = "https://api.corezoid.com",
        help_heading = "Sending"
    )]
    pub url: String,

    /// API login (the numeric id of the API key).
    #[arg(
        long,
        env = "COREZOID_API_LOGIN",
        value_name = "LOGIN",
        help_heading = "Sending"
    )]
    pub api_login: Option<String>,

    /// Read the API secret from this file; otherwise COREZOID_API_SECRET.
    #[arg(long, value_name = "FILE", help_heading = "Sending")]
    pub secret_file: Option<PathBuf>,

    /// Tasks per second, counted in operations: N, auto (find the server's limit, as a
    /// load does) or unlimited.
    #[arg(long, value_name = "N|auto|unlimited", help_heading = "Sending")]
    pub rate: Option<String>,

    /// Requests in flight at once, fixed (default: as many as the rate needs).
    #[arg(long, value_name = "N", help_heading = "Sending")]
    pub concurrency: Option<usize>,

    /// Operations per request.
    #[arg(
        long,
        default_value_t = 100,
        value_name = "N",
        help_heading = "Sending"
    )]
    pub batch_size: usize,

    /// Seconds to wait for one request's answer.
    #[arg(
        long,
        default_value_t = 30.0,
        value_name = "SECS",
        help_heading = "Sending"
    )]
    pub timeout: f64,

    /// Attempts per row before it is reported failed.
    #[arg(long, default_value_t = 8, value_name = "N", help_heading = "Sending")]
    pub max_attempts: u32,

    /// Seconds a row may spend retrying before it is reported failed.
    #[arg(
        long,
        default_value_t = 300.0,
        value_name = "SECS",
        help_heading = "Sending"
    )]
    pub max_retry_time: f64,

    /// Accept a TLS certificate that does not verify (self-signed test installs only).
    #[arg(long, help_heading = "Sending")]
    pub insecure: bool,
}

impl SendFlags {
    /// The sender's settings for `op`, checked as a load checks them; notes for the user.
    pub fn send_config(&self, op: OpKind) -> Result<(SendConfig, Vec<String>)> {
        let mut argv: Vec<String> = ["load", "-", "--url", &self.url]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut flag = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                argv.push(format!("--{name}"));
                argv.push(v);
            }
        };
        flag("api-login", self.api_login.clone());
        flag(
            "secret-file",
            self.secret_file.as_ref().map(|p| p.display().to_string()),
        );
        flag("rate", self.rate.clone());
        flag("concurrency", self.concurrency.map(|n| n.to_string()));
        flag("batch-size", Some(self.batch_size.to_string()));
        flag("timeout", Some(self.timeout.to_string()));
        flag("max-attempts", Some(self.max_attempts.to_string()));
        flag("max-retry-time", Some(self.max_retry_time.to_string()));
        if self.insecure {
            argv.push("--insecure".into());
        }
        let cmd = <LoadArgs as Args>::augment_args(clap::Command::new("load"));
        let m = cmd
            .try_get_matches_from(&argv)
            .map_err(|e| Error::Usage(e.to_string()))?;
        let args = LoadArgs::from_arg_matches(&m).map_err(|e| Error::Usage(e.to_string()))?;
        let mut notes = Vec::new();
        let mut cfg = crate::config::send_config(&args, op, &mut notes)?;
        // Every op names the one process of its log: a refusal of it stops the run.
        cfg.one_process = true;
        Ok((cfg, notes))
    }
}
