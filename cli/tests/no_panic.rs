//! The converter never panics: every fixture, mutated thousands of ways (truncated, lines
//! dropped, doubled or swapped, bytes replaced by YAML's and JSON's special characters), is
//! either converted or refused with a message. A panic fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;

use portcullis_cli::envoy::{EnvoyOptions, HostPort};
use portcullis_cli::{convert, ConvertOptions};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const SPECIAL: &[u8] = b":-[]{}&*!|>'\"#%@\n ~,?\\0123456789.";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..=rng.below(3) {
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        bytes = match rng.below(5) {
            0 => bytes[..rng.below(bytes.len() + 1)].to_vec(),
            1 if !lines.is_empty() => {
                let drop = rng.below(lines.len());
                lines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != drop)
                    .map(|(_, l)| l.to_vec())
                    .collect::<Vec<_>>()
                    .join(&b'\n')
            }
            2 if !lines.is_empty() => {
                let twice = rng.below(lines.len());
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                out.insert(twice, lines[twice].to_vec());
                out.join(&b'\n')
            }
            3 if lines.len() > 1 => {
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                let (a, b) = (rng.below(out.len()), rng.below(out.len()));
                out.swap(a, b);
                out.join(&b'\n')
            }
            _ if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = SPECIAL[rng.below(SPECIAL.len())];
                bytes
            }
            _ => bytes,
        };
    }
    bytes
}

fn fixtures(dir: &Path, out: &mut Vec<Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fixtures(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "json") {
            out.push(fs::read(&path).unwrap());
        }
    }
}

#[test]
fn mutated_fixtures_are_converted_or_refused_never_a_panic() {
    let mut inputs = Vec::new();
    fixtures(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
        &mut inputs,
    );
    assert!(inputs.len() >= 20, "{} fixtures", inputs.len());
    let hp = |host: &str, port| HostPort {
        host: host.to_owned(),
        port,
    };
    let variants = [
        ConvertOptions {
            envoy: EnvoyOptions {
                listen: hp("0.0.0.0", 8000),
                admin: hp("127.0.0.1", 9901),
                wasm_dir: "./dist".to_owned(),
                rate_limit_service: None,
                admin_data_plane: None,
            },
            admin: false,
        },
        ConvertOptions {
            envoy: EnvoyOptions {
                listen: hp("0.0.0.0", 8000),
                admin: hp("127.0.0.1", 9901),
                wasm_dir: "./dist".to_owned(),
                rate_limit_service: Some(hp("rls.internal", 8081)),
                admin_data_plane: Some(hp("127.0.0.1", 8005)),
            },
            admin: true,
        },
    ];
    let mut rng = Rng(0x5eed_c0ff_ee00_1234);
    let (mut converted, mut refused) = (0, 0);
    for input in &inputs {
        for i in 0..400 {
            let mutant = mutate(&mut rng, input);
            match convert(&mutant, &variants[i % 2]) {
                Ok(c) => {
                    converted += 1;
                    assert!(c.files.iter().any(|(name, _)| name == "envoy.yaml"));
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.message.is_empty());
                }
            }
        }
    }
    // Both ways out were taken, many times.
    assert!(
        converted > 300 && refused > 300,
        "{converted} converted, {refused} refused"
    );
}
