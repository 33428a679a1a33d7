//! `prdiff plan` (in progress).

#[derive(clap::Args)]
pub struct PlanArgs {}

pub async fn run(_args: PlanArgs) -> u8 {
    eprintln!("prdiff plan: not implemented yet");
    crate::exit::FAILURE
}
