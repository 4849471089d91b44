//! Tauri's build step: the capabilities live in src-tauri/capabilities (the package
//! root is the workspace root, where Tauri would otherwise look).

fn main() {
    let attributes = tauri_build::Attributes::new().capabilities_path_pattern("src-tauri/capabilities/**/*.json");
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri build step failed: {e:#}");
    }
}
