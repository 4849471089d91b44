//! The system tray: a status line, show/hide, backend switching, stop, quit. On Linux
//! (AppIndicator) a tray icon has no tooltip and no click events, so the status lives
//! in the menu's first, disabled item.

use hearth_manager::{BackendKind, Settings};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};

use crate::commands::AppStatus;
use crate::state::AppState;

const TRAY_ICON: &[u8] = include_bytes!("../../icons/tray.png");

/// The menu items that change with the app's state.
pub struct TrayHandles<R: Runtime> {
    status: MenuItem<R>,
    stop: MenuItem<R>,
    backends: Vec<(BackendKind, CheckMenuItem<R>)>,
}

fn backend_label(kind: BackendKind) -> &'static str {
    kind.spec().label
}

pub fn status_line(status: &AppStatus) -> String {
    let activity = if status.loading {
        "loading"
    } else if status.generating {
        "generating"
    } else if status.ready {
        "idle"
    } else {
        "not ready"
    };
    let model = match (&status.model, &status.placement) {
        (Some(model), Some(placement)) => format!("{model} {}", placement.summary),
        (Some(model), None) => model.clone(),
        (None, _) => "no model".into(),
    };
    let mut line = format!("Hearth — {} · {model} · {activity}", status.active_backend);
    if let Some(tps) = status.last_decode_tps {
        line.push_str(&format!(" · {tps:.1} tok/s"));
    }
    if status.api.url.is_some() {
        line.push_str(&format!(" · API: {} running", status.api.running));
    } else if status.api.error.is_some() {
        line.push_str(" · API: not serving");
    }
    line
}

pub fn create<R: Runtime>(app: &AppHandle<R>, settings: &Settings) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Hearth — starting…", false, None::<&str>)?;
    let show = MenuItem::with_id(app, "show", "Show window", true, None::<&str>)?;
    let hide = MenuItem::with_id(app, "hide", "Hide window", true, None::<&str>)?;
    let mut backends = Vec::new();
    for kind in BackendKind::ALL {
        let item = CheckMenuItem::with_id(
            app,
            format!("backend:{kind}"),
            backend_label(kind),
            settings.is_configured(kind),
            settings.active == kind,
            None::<&str>,
        )?;
        backends.push((kind, item));
    }
    let items: Vec<&dyn tauri::menu::IsMenuItem<R>> = backends
        .iter()
        .map(|(_, item)| item as &dyn tauri::menu::IsMenuItem<R>)
        .collect();
    let switch = Submenu::with_items(app, "Switch backend", true, &items)?;
    let stop = MenuItem::with_id(app, "stop", "Stop generation", false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Hearth", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &PredefinedMenuItem::separator(app)?,
            &show,
            &hide,
            &switch,
            &stop,
            &PredefinedMenuItem::separator(app)?,
            &quit,
        ],
    )?;
    TrayIconBuilder::with_id("main")
        .icon(Image::from_bytes(TRAY_ICON)?)
        .tooltip("Hearth")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(on_menu_event)
        .build(app)?;
    app.manage(TrayHandles { status, stop, backends });
    Ok(())
}

fn on_menu_event<R: Runtime>(app: &AppHandle<R>, event: MenuEvent) {
    let id = event.id().as_ref();
    match id {
        "show" => {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.show();
                let _ = window.unminimize();
                let _ = window.set_focus();
            }
        }
        "hide" => {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.hide();
            }
        }
        "stop" => {
            if let Some(state) = app.try_state::<AppState>() {
                state.stop.stop();
            }
        }
        "quit" => app.exit(0),
        _ => {
            let Some(kind) = id.strip_prefix("backend:").and_then(BackendKind::parse) else {
                return;
            };
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let Some(state) = app.try_state::<AppState>() else {
                    return;
                };
                if let Err(e) = crate::commands::switch_to(&state, kind).await {
                    tracing::warn!(backend = %kind, error = %e.message, "switch from the tray failed");
                }
            });
        }
    }
}

/// Updates the status line, the stop item and the backend check marks.
pub fn refresh<R: Runtime>(app: &AppHandle<R>, status: &AppStatus, settings: &Settings) {
    let Some(tray) = app.try_state::<TrayHandles<R>>() else {
        return;
    };
    let result = (|| -> tauri::Result<()> {
        tray.status.set_text(status_line(status))?;
        tray.stop.set_enabled(status.generating)?;
        for (kind, item) in &tray.backends {
            item.set_enabled(settings.is_configured(*kind))?;
            item.set_checked(*kind == status.active_backend)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::debug!(error = %e, "tray not updated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_backend_model_activity_and_speed() {
        let mut status = AppStatus {
            active_backend: BackendKind::Embedded,
            model: Some("SmolLM2".into()),
            placement: None,
            ready: true,
            reason: None,
            loading: false,
            generating: false,
            history_error: None,
            last_decode_tps: Some(41.26),
            db_path: String::new(),
            session: None,
            api: crate::local_api::ApiStatus {
                url: None,
                token_required: false,
                running: 0,
                error: None,
            },
        };
        assert_eq!(status_line(&status), "Hearth — embedded · SmolLM2 · idle · 41.3 tok/s");
        status.generating = true;
        status.last_decode_tps = None;
        assert_eq!(status_line(&status), "Hearth — embedded · SmolLM2 · generating");
        status.api.url = Some("http://127.0.0.1:8080/v1".into());
        status.api.running = 2;
        assert_eq!(
            status_line(&status),
            "Hearth — embedded · SmolLM2 · generating · API: 2 running"
        );
        status.api.url = None;
        status.api.error = Some("port 8080 cannot be used".into());
        assert_eq!(
            status_line(&status),
            "Hearth — embedded · SmolLM2 · generating · API: not serving"
        );
    }

    #[test]
    fn status_line_says_where_the_model_runs() {
        let placed = |device: &str, gpu_layers: u32| {
            let placement = hearth_manager::ModelPlacement {
                device: device.into(),
                gpu_layers: Some(gpu_layers),
                layers_total: Some(31),
                note: None,
            };
            AppStatus {
                active_backend: BackendKind::Embedded,
                model: Some("SmolLM2-135M-Instruct-Q4_1".into()),
                placement: Some(crate::commands::PlacementView::from(&placement)),
                ready: true,
                reason: None,
                loading: false,
                generating: false,
                history_error: None,
                last_decode_tps: None,
                db_path: String::new(),
                session: None,
                api: crate::local_api::ApiStatus {
                    url: None,
                    token_required: false,
                    running: 0,
                    error: None,
                },
            }
        };
        assert_eq!(
            status_line(&placed("Vulkan0", 31)),
            "Hearth — embedded · SmolLM2-135M-Instruct-Q4_1 on Vulkan0: 31/31 layers · idle"
        );
        assert_eq!(
            status_line(&placed("CPU", 0)),
            "Hearth — embedded · SmolLM2-135M-Instruct-Q4_1 on CPU · idle"
        );
        let mut unloaded = placed("CPU", 0);
        unloaded.model = None;
        unloaded.placement = None;
        assert_eq!(status_line(&unloaded), "Hearth — embedded · no model · idle");
    }
}
