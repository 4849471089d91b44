//! `hearth hw` lists the devices llama.cpp sees, and the executable starts on a machine
//! without Vulkan: GPU code is in modules loaded at start, never linked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::hearth;

fn hw_json(envs: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(hearth())
        .args(["hw", "--json"])
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn needed_libraries(binary: &Path) -> String {
    let out = Command::new("readelf")
        .args(["-d", binary.to_str().unwrap()])
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_executable_links_no_gpu_library() {
    let needed = needed_libraries(Path::new(hearth()));
    assert!(needed.contains("libc.so"), "{needed}");
    for gpu in ["libvulkan", "libcuda", "libcudart", "libcublas"] {
        assert!(!needed.contains(gpu), "hearth links {gpu}:\n{needed}");
    }
}

#[test]
fn hw_lists_the_cpu_device_and_says_why_each_gpu_module_is_not_in_use() {
    // No Vulkan driver at all (an ICD list that names nothing): the app still starts.
    let hw = hw_json(&[("VK_ICD_FILENAMES", "/nonexistent.json")]);
    let devices = hw["llama_devices"].as_array().unwrap();
    assert!(
        devices.iter().any(|d| d["backend"] == "CPU" && d["kind"] == "cpu"),
        "{hw}"
    );
    assert!(devices.iter().all(|d| d["backend"] != "Vulkan"), "{hw}");
    let modules = hw["gpu_modules"].as_array().unwrap();
    assert_eq!(modules.len(), 2, "{hw}");
    for m in modules {
        assert!(m["problem"].as_str().is_some_and(|p| !p.is_empty()), "{m}");
    }
}

#[test]
#[ignore = "needs the Vulkan module and lavapipe: run by `make test` (test-vulkan)"]
fn hw_lists_lavapipe_with_its_memory() {
    // What `make test` sets: lavapipe, named so that llama.cpp does not skip it.
    let hw = hw_json(&[]);
    let module = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libggml-vulkan.so");
    assert!(
        module.is_file(),
        "{} is missing: make vulkan builds it",
        module.display()
    );
    let needed = needed_libraries(&module);
    assert!(needed.contains("libvulkan.so"), "the module links Vulkan: {needed}");
    let vulkan = hw["llama_devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["backend"] == "Vulkan")
        .unwrap_or_else(|| panic!("no Vulkan device listed: {hw}"))
        .clone();
    assert_eq!(vulkan["name"], "Vulkan0");
    assert!(vulkan["description"].as_str().unwrap().contains("llvmpipe"), "{vulkan}");
    assert!(vulkan["memory_total_bytes"].as_u64().unwrap() > 0, "{vulkan}");
    assert!(vulkan["memory_free_bytes"].as_u64().unwrap() > 0, "{vulkan}");
    let module_line = hw["gpu_modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["backend"] == "Vulkan")
        .unwrap()
        .clone();
    assert_eq!(
        (module_line["loaded"].as_bool(), module_line["devices"].as_u64()),
        (Some(true), Some(1))
    );
}

/// `hearth generate --json` on lavapipe with the SmolLM2 chat model and `envs`.
fn generate_on_vulkan(envs: &[(&str, &str)], extra: &[&str]) -> serde_json::Value {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(hearth())
        .args([
            "generate",
            "--json",
            "--temperature",
            "0",
            "-n",
            "4",
            "-t",
            "2",
            "--device",
            "vulkan0",
        ])
        .arg("--model")
        .arg(common::chat_model())
        .args(extra)
        .arg("Name a color.")
        .env("HEARTH_DATA_DIR", data.path())
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hearth generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `hearth plan --json` says of SmolLM2 on Vulkan0 with `envs`.
fn plan_on_vulkan(envs: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(hearth())
        .args(["plan", "--json", "--device", "vulkan0"])
        .arg(common::chat_model())
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs the Vulkan module and lavapipe: run by `make test` (test-vulkan)"]
fn a_small_gpu_gets_the_layers_the_plan_gives_it() {
    // lavapipe reports 2 GiB; capped at 1100 MiB (512 of them kept free, 384 for the
    // device's runtime), the planner has room for some of SmolLM2's 31 layers only.
    let small = [("HEARTH_GPU_MEMORY_MB", "1100")];
    let plan = plan_on_vulkan(&small);
    assert_eq!(plan["device"], "Vulkan0", "{plan}");
    assert_eq!(plan["verdict"], "partial_offload", "{}", plan["reason"]);
    let layers = plan["n_gpu_layers"].as_u64().unwrap();
    assert!(layers > 0 && layers < 31, "{layers}");
    let vulkan = plan["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "Vulkan0")
        .unwrap()
        .clone();
    assert_eq!(vulkan["memoryFreeBytes"], 1100u64 << 20, "{vulkan}");
    assert_eq!(vulkan["nGpuLayers"], layers, "{vulkan}");
    // Without the cap the whole model fits there.
    assert_eq!(plan_on_vulkan(&[])["verdict"], "fits_on_gpu");

    // `--gpu-layers auto` loads what the plan says, on that device.
    let reply = generate_on_vulkan(&small, &[]);
    assert_eq!(reply["device"], "Vulkan0", "{reply}");
    assert_eq!(reply["gpu_layers"], layers, "{reply}");
    assert_eq!(reply["layers_total"], 31, "{reply}");
    assert!(reply["placement_note"].is_null(), "{reply}");
    assert!(!reply["text"].as_str().unwrap().is_empty(), "{reply}");
}

#[test]
#[ignore = "needs the Vulkan module and lavapipe: run by `make test` (test-vulkan)"]
fn a_load_the_device_cannot_hold_ends_on_fewer_layers_and_says_so() {
    // GGML's Vulkan backend refuses any buffer over 64 KiB: every allocation of the
    // weights, the cache and the compute buffers fails as out of device memory would.
    let refusing = [("GGML_VK_FORCE_MAX_BUFFER_SIZE", "65536")];
    let reply = generate_on_vulkan(&refusing, &["--gpu-layers", "31"]);
    let layers = reply["gpu_layers"].as_u64().unwrap();
    assert!(layers < 31, "still every layer on the device: {reply}");
    if reply["device"] == "CPU" {
        assert_eq!(layers, 0, "{reply}");
    }
    let note = reply["placement_note"]
        .as_str()
        .unwrap_or_else(|| panic!("no note: {reply}"));
    assert!(note.contains("31 layers did not fit on Vulkan0"), "{note}");
    assert!(
        note.contains("layers run on Vulkan0") || note.contains("runs on the CPU"),
        "{note}"
    );
    assert!(!reply["text"].as_str().unwrap().is_empty(), "{reply}");
}

#[test]
fn a_device_that_is_not_there_stops_a_load_with_what_was_found() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(hearth())
        .args(["generate", "-n", "1", "--device", "vulkan7", "--model"])
        .arg(common::chat_model())
        .arg("Hi")
        .env("HEARTH_DATA_DIR", data.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("device \"vulkan7\" not found"), "{stderr}");
    assert!(stderr.contains("llama.cpp found CPU"), "{stderr}");
    assert!(
        stderr.contains("Vulkan: "),
        "what became of the Vulkan module: {stderr}"
    );
}
