//! `hearth models` and model-name resolution.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print one JSON object per model instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ModelRow {
    name: String,
    /// Hearth's folder, or the tool whose store holds the file (used where it lies).
    source: ModelSource,
    path: PathBuf,
    bytes: u64,
    architecture: Option<String>,
    quantization: Option<String>,
    parameters: u64,
    context_length: Option<u64>,
    chat_template: bool,
    error: Option<String>,
    /// The latest measurement of this file as it is now (`hearth eval`, the app's Quantize…).
    measured: Option<hearth_store::ModelEval>,
}

use hearth_core::stores::{ModelSource, StoredModel};
use hearth_worker::models::installed;
pub use hearth_worker::models::resolve;

/// A file in Hearth's models folder, named by its file name.
fn own(path: &Path) -> StoredModel {
    StoredModel {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        source: ModelSource::Hearth,
    }
}

fn describe(model: StoredModel) -> ModelRow {
    let StoredModel { name, path, source } = model;
    let path = path.as_path();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match hearth_gguf::read(path) {
        Ok(info) => ModelRow {
            name,
            source,
            path: path.to_path_buf(),
            bytes,
            architecture: info.architecture.clone(),
            quantization: info.quantization.clone(),
            parameters: info.parameter_count,
            context_length: info.context_length,
            chat_template: info.chat_template.is_some(),
            error: None,
            measured: None,
        },
        Err(e) => ModelRow {
            name,
            source,
            path: path.to_path_buf(),
            bytes,
            architecture: None,
            quantization: None,
            parameters: 0,
            context_length: None,
            chat_template: false,
            error: Some(e.to_string()),
            measured: None,
        },
    }
}

fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

fn human_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

/// A measurement in a few words: "ppl 22.08 · vs gemma-3-270m-F16.gguf: KL 0.0048, same top 95.5%".
pub fn measured_words(eval: &hearth_store::ModelEval) -> String {
    let mut words = format!("ppl {:.2}", eval.perplexity);
    if let Some(r) = &eval.reference {
        words.push_str(&format!(
            " · vs {}: KL {:.4}, same top {:.1}%",
            r.name, r.kl_mean, r.same_top_percent
        ));
    }
    words
}

pub fn run(args: &ModelsArgs) -> Result<()> {
    let models = installed()?
        .into_iter()
        .map(|p| own(&p))
        .chain(hearth_core::stores::foreign_models());
    let mut rows: Vec<ModelRow> = models.map(describe).collect();
    // Measurements are extra: a database that cannot be read leaves the list as it is.
    match hearth_store::Store::open_default() {
        Ok(store) => {
            for row in &mut rows {
                row.measured = store.latest_model_eval_at(&row.path).ok().flatten();
            }
        }
        Err(e) => tracing::warn!(error = %e, "no measurements: the database cannot be opened"),
    }
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    let dir = hearth_core::paths::models_dir();
    if rows.is_empty() {
        println!(
            "No models in {} (nor in Ollama's or LM Studio's folders). Get one with \
             `hearth pull REPO QUANT` (e.g. `hearth pull bartowski/SmolLM2-135M-Instruct-GGUF Q4_K_M`) \
             or run `make models` to install the defaults.",
            dir.display()
        );
        return Ok(());
    }
    println!(
        "Models in {} (and those Ollama and LM Studio keep, used where they lie)",
        dir.display()
    );
    println!(
        "{:<36} {:<9} {:>10} {:<8} {:<8} {:>6} {:>8} {:<5} MEASURED",
        "NAME", "FROM", "SIZE", "ARCH", "QUANT", "PARAMS", "CONTEXT", "CHAT"
    );
    for row in &rows {
        if let Some(error) = &row.error {
            println!(
                "{:<36} {:<9} {:>10} unusable: {error}",
                row.name,
                row.source.label(),
                human_bytes(row.bytes)
            );
            continue;
        }
        println!(
            "{:<36} {:<9} {:>10} {:<8} {:<8} {:>6} {:>8} {:<5} {}",
            row.name,
            row.source.label(),
            human_bytes(row.bytes),
            row.architecture.as_deref().unwrap_or("?"),
            row.quantization.as_deref().unwrap_or("?"),
            human_params(row.parameters),
            row.context_length.map_or("?".into(), |c| c.to_string()),
            if row.chat_template { "yes" } else { "no" },
            row.measured.as_ref().map_or_else(|| "-".to_owned(), measured_words)
        );
    }
    Ok(())
}
