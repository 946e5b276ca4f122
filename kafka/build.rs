//! Embeds every event schema: `schemas/<AggregateType>/<EventType>.avsc`. Adding an
//! aggregate's events is adding its folder; nothing else in the crate names them.

use std::fmt::Write as _;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut entries = Vec::new();
    for aggregate in std::fs::read_dir(&root)? {
        let aggregate = aggregate?.path();
        if !aggregate.is_dir() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", aggregate.display());
        let name = aggregate
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("schema folder name is not UTF-8")?
            .to_owned();
        for file in std::fs::read_dir(&aggregate)? {
            let file = file?.path();
            if file.extension().is_some_and(|e| e == "avsc") {
                entries.push((name.clone(), file));
            }
        }
    }
    entries.sort();
    let mut out = String::from(
        "/// `(aggregate type, schema text)` of every event schema in `kafka/schemas/`.\n",
    );
    out.push_str("pub const SCHEMA_FILES: &[(&str, &str)] = &[\n");
    for (aggregate, file) in &entries {
        writeln!(
            out,
            "    ({aggregate:?}, include_str!({:?})),",
            file.display().to_string()
        )?;
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR")?).join("schema_files.rs");
    std::fs::write(dest, out)?;
    Ok(())
}
