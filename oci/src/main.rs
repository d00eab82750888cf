//! `portcullis-oci`: what `make oci` and `make push` run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use portcullis_oci::layout::Layout;
use portcullis_oci::registry::{self, Registry};
use portcullis_oci::{image_name, layout_dir, package, wasm_path, write_checksum, Provenance};

const USAGE: &str = "\
usage:
  portcullis-oci build [--dist DIR] [--out DIR] MODULE...
      package dist/portcullis-<MODULE>.wasm as OCI images (compat and oci variants) in the
      OCI image layout <out>/portcullis-<MODULE> (default out: <dist>/oci), and write
      dist/portcullis-<MODULE>.wasm.sha256; a MODULE is a filter (jwt, acl, rate-limiting,
      token-issuer) or the one-VM gateway (gateway), as the Makefile's MODULES lists them
  portcullis-oci push --registry HOST[:PORT]/REPO [--tag TAG] [--plain-http] [--out DIR] MODULE...
      push each layout as REPO/portcullis-<MODULE>:<TAG> (compat) and :<TAG>-oci (oci);
      TAG defaults to the workspace version the layouts were built with";

struct Args {
    command: String,
    dist: PathBuf,
    out: Option<PathBuf>,
    registry: Option<String>,
    tag: Option<String>,
    plain_http: bool,
    filters: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let command = args.next().context("no command")?;
    let mut parsed = Args {
        command,
        dist: PathBuf::from("dist"),
        out: None,
        registry: None,
        tag: None,
        plain_http: false,
        filters: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--dist" => parsed.dist = PathBuf::from(value()?),
            "--out" => parsed.out = Some(PathBuf::from(value()?)),
            "--registry" => parsed.registry = Some(value()?),
            "--tag" => parsed.tag = Some(value()?),
            "--plain-http" => parsed.plain_http = true,
            flag if flag.starts_with('-') => bail!("unknown option {flag}"),
            filter => parsed.filters.push(filter.to_owned()),
        }
    }
    if parsed.filters.is_empty() {
        bail!("name at least one module");
    }
    Ok(parsed)
}

fn build(args: &Args) -> anyhow::Result<()> {
    let root = std::env::current_dir()?;
    let provenance = Provenance::of_workspace(&root)?;
    let out = args.out.clone().unwrap_or_else(|| args.dist.join("oci"));
    println!(
        "oci: version {} revision {} created {}",
        provenance.version,
        provenance.revision,
        provenance.created_rfc3339()
    );
    for packaged in package(&root, &args.dist, &out, &args.filters, &provenance)? {
        let sum = write_checksum(&wasm_path(&args.dist, &packaged.filter))?;
        for (tag, variant, digest) in &packaged.images {
            let reference = format!("{}:{tag}", image_name(&packaged.filter));
            println!("  {reference:<36} {:<6} {digest}", variant.name());
        }
        println!("  {:<36} {}", "", sum.display());
    }
    println!("oci: layouts in {}", out.display());
    Ok(())
}

fn push(args: &Args) -> anyhow::Result<()> {
    let prefix = args
        .registry
        .as_deref()
        .context("push needs --registry HOST[:PORT]/REPO (make push REGISTRY=…)")?;
    let registry = Registry::new(prefix, args.plain_http)?;
    let out = args.out.clone().unwrap_or_else(|| args.dist.join("oci"));
    let runtime = registry::runtime()?;
    for filter in &args.filters {
        let layout = Layout::open(&layout_dir(&out, filter))?;
        let tag = match &args.tag {
            Some(tag) => tag.clone(),
            None => layout
                .entries()?
                .into_iter()
                .find(|e| e.variant == portcullis_oci::Variant::Compat)
                .map(|e| e.tag)
                .context("layout has no compat image")?,
        };
        let pushed = runtime.block_on(registry.push_layout(&layout, &image_name(filter), &tag))?;
        for p in pushed {
            println!("{}@{}  ({})", p.reference, p.digest, p.variant.name());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args.command.as_str() {
        "build" => build(&args),
        "push" => push(&args),
        other => bail!("unknown command {other:?}"),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portcullis-oci: {err:#}\n\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}
