//! `portcullis-admin import FILE`: to be written.

use std::path::Path;

use crate::cli::Options;

pub fn run(_options: &Options, file: &Path) -> Result<(), String> {
    Err(format!("import {}: not implemented yet", file.display()))
}
