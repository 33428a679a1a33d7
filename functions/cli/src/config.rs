//! `prdiff config` (in progress).

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// List configurations.
    List,
}

pub async fn run(_cmd: ConfigCommand) -> u8 {
    eprintln!("prdiff config: not implemented yet");
    crate::exit::FAILURE
}
