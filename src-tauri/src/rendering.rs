//! How WebKitGTK draws the window. By default it composites with OpenGL. Without a
//! GPU that OpenGL is Mesa's llvmpipe, which rasterizes on the CPU and redraws the
//! whole window for every frame: while a reply streamed, the web process took 0.8 of
//! a core on a 2-core machine, taken straight from the engine (its decode rate fell
//! by half). Software compositing repaints only what changed (0.3 of a core there).
//! So with no GPU to draw with (no DRM render node) the app asks for software
//! compositing, unless the user set the variable either way.

use std::path::Path;

/// WebKitGTK's switch: `1` draws without OpenGL compositing.
pub const COMPOSITING_VAR: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// What [`configure`] decided, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compositing {
    /// The user set the variable; left as it is.
    UserChoice(String),
    /// A render node exists: WebKit's own (GPU) compositing.
    Gpu,
    /// No render node: software compositing.
    SoftwareNoGpu,
}

/// Whether `dri` (normally `/dev/dri`) holds a render node (`renderD128`, …).
pub fn has_render_node(dri: &Path) -> bool {
    std::fs::read_dir(dri).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}

pub fn decide(user_value: Option<String>, render_node: bool) -> Compositing {
    match user_value {
        Some(value) => Compositing::UserChoice(value),
        None if render_node => Compositing::Gpu,
        None => Compositing::SoftwareNoGpu,
    }
}

/// Sets [`COMPOSITING_VAR`] when there is no GPU. Call it first thing in `main`,
/// before any thread starts (the environment is process-wide) and before GTK.
pub fn configure() -> Compositing {
    let choice = decide(
        std::env::var(COMPOSITING_VAR).ok(),
        has_render_node(Path::new("/dev/dri")),
    );
    if choice == Compositing::SoftwareNoGpu {
        std::env::set_var(COMPOSITING_VAR, "1");
    }
    choice
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_render_node_means_gpu_compositing() {
        let dri = tempfile::tempdir().unwrap();
        assert!(!has_render_node(dri.path()));
        std::fs::write(dri.path().join("card0"), b"").unwrap();
        assert!(!has_render_node(dri.path()), "a card node alone renders nothing");
        std::fs::write(dri.path().join("renderD128"), b"").unwrap();
        assert!(has_render_node(dri.path()));
        assert!(!has_render_node(&dri.path().join("missing")));
    }

    #[test]
    fn the_user_choice_wins_then_the_hardware_decides() {
        assert_eq!(decide(Some("0".into()), false), Compositing::UserChoice("0".into()));
        assert_eq!(decide(Some("1".into()), true), Compositing::UserChoice("1".into()));
        assert_eq!(decide(None, true), Compositing::Gpu);
        assert_eq!(decide(None, false), Compositing::SoftwareNoGpu);
    }
}
