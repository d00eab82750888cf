//! `portcullis`: see `portcullis_cli::cli::USAGE`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(portcullis_cli::cli::run(&args));
}
