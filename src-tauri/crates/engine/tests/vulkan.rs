//! llama.cpp's Vulkan backend, loaded as a module, run by Mesa's CPU Vulkan driver
//! (lavapipe): the GPU code path on any machine, as llama.cpp's own CI runs it.
//!
//! `make test` builds the module (`scripts/build_vulkan_module.sh`, beside the test
//! programs) and runs these with `VK_ICD_FILENAMES` pointing at lavapipe and
//! `GGML_VK_VISIBLE_DEVICES=0`: llama.cpp skips Vulkan devices of CPU type unless they
//! are named, which is right for users (`auto` must not pick lavapipe over the CPU
//! backend). lavapipe is slow (SmolLM2 decodes about 1.5 tokens/s on it here), so these
//! are a few short replies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use hearth_core::{ChatMessage, SamplingParams};
use hearth_engine::{devices, Device, DeviceChoice, Engine, EngineConfig, GenerationRequest, Prompt};

const HOW: &str = "run by `make test` (target test-vulkan): needs the Vulkan module and Mesa's lavapipe";

fn lavapipe() -> Device {
    let all = devices().unwrap();
    all.iter().find(|d| d.backend == "Vulkan").cloned().unwrap_or_else(|| {
        panic!(
            "no Vulkan device: {:?}; modules: {:?}. Build the module (make vulkan) and set \
                 VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json GGML_VK_VISIBLE_DEVICES=0",
            all,
            hearth_engine::gpu_modules()
        )
    })
}

fn load_on(path: PathBuf, device: DeviceChoice) -> Engine {
    Engine::load(EngineConfig {
        n_gpu_layers: 99,
        device,
        max_draft: 0,
        ..EngineConfig::new(path).with_n_ctx(4096)
    })
    .expect("model loads")
}

#[test]
#[ignore = "needs the Vulkan module and lavapipe: run by `make test` (test-vulkan)"]
fn lavapipe_is_listed_with_its_memory_and_auto_leaves_it_alone() {
    let device = lavapipe();
    assert_eq!(device.name, "Vulkan0", "{device:?}");
    assert!(device.description.contains("llvmpipe"), "{device:?}");
    assert_eq!(device.kind, "cpu", "lavapipe is a CPU-type device: {device:?}");
    assert!(
        device.memory_total_bytes > 0 && device.memory_free_bytes > 0,
        "{device:?}"
    );
    // `auto` does not put a model on a CPU-type device: the CPU backend runs it.
    let _g = serial();
    let engine = load_on(smollm(), DeviceChoice::Auto);
    assert_eq!(engine.info().device, "CPU");
    assert_eq!(engine.info().n_gpu_layers, 0, "{HOW}");
}

/// Three greedy replies of 32 tokens on the CPU and with every layer on lavapipe:
/// equal, or equal up to a near-tie that the device's other rounding tipped.
fn vulkan_matches_the_cpu(path: PathBuf, prompts: Vec<Prompt>) {
    let _g = serial();
    let vulkan = load_on(path.clone(), DeviceChoice::Named("vulkan0".into()));
    let info = vulkan.info().clone();
    assert_eq!(info.device, "Vulkan0");
    assert_eq!(
        info.n_gpu_layers,
        info.n_layer + 1,
        "every layer and the output on the device: {info:?}"
    );
    // With layers on a device the planner reserved the whole context: allocated at
    // load. On the CPU the cache starts small and grows.
    assert_eq!(info.n_ctx_initial, info.n_ctx, "{info:?}");
    let cpu = load_on(path, DeviceChoice::Cpu);
    assert_eq!((cpu.info().device.as_str(), cpu.info().n_gpu_layers), ("CPU", 0));
    assert!(cpu.info().n_ctx_initial < cpu.info().n_ctx, "{:?}", cpu.info());
    let mut parted = 0;
    for (i, prompt) in prompts.into_iter().enumerate() {
        let request = GenerationRequest {
            prompt,
            params: SamplingParams::greedy(32),
        };
        let reference = cpu.generate_traced(request.clone(), TRACE_TOP).unwrap();
        let on_device = vulkan.generate_traced(request, TRACE_TOP).unwrap();
        assert!(
            !on_device.text.trim().is_empty(),
            "prompt {i}: an empty reply on the device"
        );
        let what = format!("{} prompt {i} on Vulkan0 (lavapipe) vs the CPU", info.name);
        if assert_same_or_near_tie(&what, true, &reference, &on_device).is_some() {
            parted += 1;
        }
    }
    eprintln!("{}: {parted} of 3 replies parted at a near-tie", info.name);
}

#[test]
#[ignore = "needs the Vulkan module and lavapipe: run by `make test` (test-vulkan)"]
fn smollm2_with_every_layer_on_vulkan_replies_as_on_the_cpu() {
    let questions = [
        "What is the capital of France?",
        "Give two tips for a good night's sleep.",
        "Name three animals that live in the sea.",
    ];
    vulkan_matches_the_cpu(
        smollm(),
        questions
            .iter()
            .map(|q| Prompt::Chat(vec![ChatMessage::user(*q)]))
            .collect(),
    );
}

#[test]
#[ignore = "needs the Vulkan module and lavapipe: run by `make test` (test-vulkan)"]
fn gemma_with_every_layer_on_vulkan_replies_as_on_the_cpu() {
    let openings = [
        "The train left the station at dawn, and the passengers",
        "In the middle of the forest stood a house made of stone, where",
        "The recipe called for flour, eggs and sugar, but the baker",
    ];
    vulkan_matches_the_cpu(gemma(), openings.iter().map(|t| Prompt::Text((*t).into())).collect());
}

#[test]
fn naming_a_device_that_is_not_there_says_what_is_missing() {
    // With or without the module and lavapipe: an error that says why, not a crash.
    let _g = serial();
    let err = Engine::load(EngineConfig {
        n_gpu_layers: 99,
        device: DeviceChoice::Named("Vulkan7".into()),
        ..EngineConfig::new(smollm()).with_n_ctx(512)
    })
    .expect_err("no seventh Vulkan device");
    let message = err.to_string();
    assert!(message.contains("\"Vulkan7\" not found"), "{message}");
    assert!(message.contains("CPU"), "lists what was found: {message}");
    assert!(
        message.contains("Vulkan: "),
        "says what became of the Vulkan module: {message}"
    );
}
