//! The Corezoid API sandbox (to be built: see issue 2).
/// Placeholder until the sandbox lands.
pub async fn run_command(_a: crate::cli::SandboxArgs) -> crate::Result<()> {
    Err(crate::Error::Other("the sandbox is not built yet".into()))
}
