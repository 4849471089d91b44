//! Where the loaded model runs, as its backend reported it when it loaded: the device,
//! the layers on it, and why it is not where the settings asked (a GPU without room).
//! Hearth's engine worker says; Ollama and vLLM do not, and have no placement.

use hearth_core::ModelDescriptor;
use serde::Serialize;

/// The device and layers of a loaded model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPlacement {
    /// "CPU" or llama.cpp's device name ("Vulkan0", "CUDA0").
    pub device: String,
    /// Layers on that device (0 on the CPU).
    pub gpu_layers: Option<u32>,
    /// The model's layers, counting its output layer: what `gpu_layers` is out of.
    pub layers_total: Option<u32>,
    /// Why the model runs elsewhere than asked, in words, for the user.
    pub note: Option<String>,
}

impl ModelPlacement {
    /// The placement `descriptor` reports; `None` when its backend does not say.
    pub fn from_descriptor(descriptor: &ModelDescriptor) -> Option<Self> {
        Some(Self {
            device: descriptor.device.clone()?,
            gpu_layers: descriptor.gpu_layers,
            layers_total: descriptor.layers_total,
            note: descriptor.placement_note.clone(),
        })
    }

    /// Whether nothing runs on a GPU: a device named after a GPU with no layers on it
    /// computes on the CPU all the same.
    pub fn on_cpu(&self) -> bool {
        self.device.eq_ignore_ascii_case("cpu") || self.gpu_layers == Some(0)
    }

    /// Where it runs, in a few words after the model's name: "on Vulkan0: 31/31 layers",
    /// "on Vulkan0: 20/31 layers (the rest on CPU)", "on CPU".
    pub fn summary(&self) -> String {
        if self.on_cpu() {
            return "on CPU".into();
        }
        let device = &self.device;
        match (self.gpu_layers, self.layers_total) {
            (Some(on), Some(total)) if on < total => format!("on {device}: {on}/{total} layers (the rest on CPU)"),
            (Some(on), Some(total)) => format!("on {device}: {on}/{total} layers"),
            (Some(on), None) => format!("on {device}: {on} layers"),
            (None, _) => format!("on {device}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(device: Option<&str>, gpu_layers: Option<u32>, layers_total: Option<u32>) -> ModelDescriptor {
        ModelDescriptor {
            id: "SmolLM2-135M-Instruct-Q4_1".into(),
            owned_by: "hearth".into(),
            context_length: Some(4096),
            has_chat_template: Some(true),
            device: device.map(str::to_owned),
            gpu_layers,
            layers_total,
            placement_note: None,
        }
    }

    fn summary(device: &str, gpu_layers: Option<u32>, layers_total: Option<u32>) -> String {
        ModelPlacement::from_descriptor(&descriptor(Some(device), gpu_layers, layers_total))
            .map(|p| p.summary())
            .unwrap_or_default()
    }

    #[test]
    fn a_backend_that_does_not_say_where_its_model_runs_has_no_placement() {
        assert_eq!(
            ModelPlacement::from_descriptor(&descriptor(None, Some(3), Some(31))),
            None
        );
        let mut told = descriptor(Some("Vulkan0"), Some(20), Some(31));
        told.placement_note = Some("Vulkan0 had room for 20 of the 31 layers asked for".into());
        let placement = ModelPlacement::from_descriptor(&told).expect("placed");
        assert_eq!(placement.device, "Vulkan0");
        assert_eq!(placement.note.as_deref(), told.placement_note.as_deref());
    }

    #[test]
    fn the_summary_says_the_device_and_how_many_layers_are_on_it() {
        assert_eq!(summary("Vulkan0", Some(31), Some(31)), "on Vulkan0: 31/31 layers");
        assert_eq!(
            summary("CUDA0", Some(20), Some(31)),
            "on CUDA0: 20/31 layers (the rest on CPU)"
        );
        assert_eq!(summary("CPU", Some(0), Some(31)), "on CPU");
        assert_eq!(summary("Vulkan0", Some(0), Some(31)), "on CPU", "no layer on the GPU");
        assert_eq!(summary("Vulkan0", Some(12), None), "on Vulkan0: 12 layers");
        assert_eq!(summary("Vulkan0", None, None), "on Vulkan0");
    }
}
