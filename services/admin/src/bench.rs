//! `portcullis-admin bench`: to be written.

use crate::cli::BenchOptions;

pub async fn run(_options: BenchOptions) -> Result<(), String> {
    Err("bench: not implemented yet".to_owned())
}
