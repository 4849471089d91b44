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
