//! `hearth-app devices [--model PATH] [--ctx N]`: the devices llama.cpp sees, each with
//! the fit planner's verdict for the model on it, as the child protocol's answer on
//! stdout (`hearth_child`): `done` with the list, or `error` with its code.
//!
//! The settings' device picker runs this in a child process rather than asking
//! llama.cpp in the app's own: listing the devices loads the GPU drivers, and a CUDA
//! context keeps hundreds of MB of VRAM for as long as its process lives. The child
//! exits at once and gives it all back; the engine worker loads the drivers only while
//! it has a model.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser};
use hearth_core::ErrorCode;
use hearth_hw::PlanRequest;
use hearth_worker::placement::{device_options, DeviceOption};

/// The first argument that selects this mode.
pub const MODE: &str = "devices";

/// `hearth-app devices …`, parsed after the mode's name.
#[derive(Parser, Debug)]
#[command(
    name = "hearth-app devices",
    bin_name = "hearth-app devices",
    about = "Lists the devices a model can run on, as JSON (run by Hearth's settings)"
)]
pub struct DevicesCommand {
    #[command(flatten)]
    pub args: DevicesArgs,
}

/// What to plan for on each device.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DevicesArgs {
    /// A .gguf file: each device then comes with the plan for it. Without one the
    /// devices are listed without verdicts.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Context in tokens the plans count the KV cache for.
    #[arg(long, default_value_t = 4096)]
    pub ctx: u32,
}

impl DevicesArgs {
    /// The command line that asks for these (after the program), for the app to run.
    pub fn command_line(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![MODE.into(), "--ctx".into(), self.ctx.to_string().into()];
        if let Some(model) = &self.model {
            args.extend(["--model".into(), model.clone().into_os_string()]);
        }
        args
    }
}

/// Every device, the CPU first, with the plan for `args.model` on it.
pub fn options(args: &DevicesArgs) -> Result<Vec<DeviceOption>> {
    let header = match &args.model {
        Some(path) => Some(
            hearth_gguf::read(path).with_context(|| format!("the model {} cannot be planned for", path.display()))?,
        ),
        None => None,
    };
    let request = PlanRequest {
        n_ctx: args.ctx,
        ..PlanRequest::default()
    };
    device_options(header.as_ref(), &request)
}

/// Prints the devices (or why not, with its code) and returns; the process then exits,
/// freeing what the GPU drivers took. An error still ends the process with a failure.
pub fn run(args: &DevicesArgs) -> Result<()> {
    hearth_child::report(options(args), code_of)
}

/// A model that cannot be read is the model's fault (`invalid_model`); anything else is
/// the devices' (`devices_unavailable`).
fn code_of(e: &anyhow::Error) -> ErrorCode {
    if e.downcast_ref::<hearth_gguf::GgufError>().is_some() {
        ErrorCode::InvalidModel
    } else {
        ErrorCode::DevicesUnavailable
    }
}

#[cfg(test)]
mod tests {
    use hearth_child::ChildLine;
    use hearth_gguf::builder::{DecoderShape, GgufBuilder};
    use serde_json::Value;

    use super::*;

    /// The devices as the answer line carries them.
    fn listed(args: &DevicesArgs) -> Vec<Value> {
        let line = ChildLine::Done {
            result: options(args).expect("devices listed"),
        }
        .to_line();
        let value: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(value["event"], "done", "{value}");
        value["result"].as_array().cloned().expect("a list")
    }

    #[test]
    fn the_cpu_is_listed_and_auto_picks_it_without_a_gpu() {
        let devices = listed(&DevicesArgs { model: None, ctx: 4096 });
        let cpu = devices.iter().find(|d| d["backend"] == "CPU").expect("the CPU");
        assert_eq!(cpu["value"], "cpu", "what the setting takes");
        assert_eq!(cpu["kind"], "cpu");
        assert!(cpu["memoryTotalBytes"].as_u64().unwrap_or(0) > 0, "{cpu}");
        assert_eq!(cpu["verdict"], Value::Null, "no model, no plan");
        assert_eq!(devices.iter().filter(|d| d["auto"] == true).count(), 1, "{devices:?}");
        let has_gpu = devices.iter().any(|d| d["kind"] == "gpu" || d["kind"] == "igpu");
        if !has_gpu {
            assert_eq!(
                cpu["auto"], true,
                "auto runs on the CPU when there is no GPU: {devices:?}"
            );
        }
    }

    #[test]
    fn with_a_model_each_device_comes_with_its_plan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("qwen3-14b.gguf");
        GgufBuilder::decoder(&DecoderShape::qwen3_14b_q4_k_m())
            .write(&model)
            .expect("synthetic model");
        let args = DevicesArgs {
            model: Some(model),
            ctx: 2048,
        };
        let devices = listed(&args);
        for d in &devices {
            assert!(d["verdict"].is_string(), "{d}");
            assert_eq!(d["nLayersTotal"], 41, "40 layers and the output layer: {d}");
            assert!(d["reason"].is_string(), "{d}");
        }
        let cpu = devices.iter().find(|d| d["value"] == "cpu").expect("the CPU");
        assert_eq!(cpu["nGpuLayers"], 0);
        // The app reads what this mode prints.
        let line = ChildLine::Done {
            result: options(&args).expect("listed"),
        }
        .to_line();
        let Some(Ok(ChildLine::Done { result: views })) = hearth_child::parse_line::<Vec<DeviceOption>>(&line) else {
            panic!("not a device list: {line}");
        };
        assert_eq!(views.len(), devices.len());
        assert!(views
            .iter()
            .all(|v| v.verdict.is_some() && v.n_layers_total == Some(41)));
    }

    #[test]
    fn an_unreadable_model_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("half.gguf");
        std::fs::write(&model, b"GGUF").expect("write");
        let err = options(&DevicesArgs {
            model: Some(model.clone()),
            ctx: 4096,
        })
        .expect_err("not a model");
        assert!(format!("{err:#}").contains(&model.display().to_string()), "{err:#}");
        assert_eq!(code_of(&err), ErrorCode::InvalidModel, "the model's fault: {err:#}");
        assert_eq!(code_of(&anyhow::anyhow!("no driver")), ErrorCode::DevicesUnavailable);
    }

    #[test]
    fn the_command_line_asks_for_what_the_args_say() {
        let args = DevicesArgs {
            model: Some("/models/m.gguf".into()),
            ctx: 8192,
        };
        assert_eq!(
            args.command_line(),
            ["devices", "--ctx", "8192", "--model", "/models/m.gguf"].map(OsString::from)
        );
        let parsed = DevicesCommand::try_parse_from(
            std::iter::once(OsString::from("hearth-app")).chain(args.command_line().into_iter().skip(1)),
        )
        .expect("parsed");
        assert_eq!(parsed.args, args);
        let bare = DevicesCommand::try_parse_from(["hearth-app"]).expect("parsed");
        assert_eq!(bare.args, DevicesArgs { model: None, ctx: 4096 });
    }
}
