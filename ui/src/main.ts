// Wires the app together: one store, the api, and the views that subscribe.
import "./styles.css";
import { api, onStatus, toApiError, type AppStatus } from "./api";
import { createChatController } from "./chat/controller";
import { createChatView } from "./chat/chatView";
import { createDashboard } from "./dashboard/dashboard";
import { h, on } from "./dom";
import { createGetModelsPage } from "./models/getModels";
import { placementNotices } from "./placement";
import { openHistory, type History } from "./sessions/history";
import { createSidebar } from "./sessions/sidebar";
import { createSettingsPanel } from "./settings/panel";
import { createStore, localIds, type Tab } from "./state";
import { createTopBar } from "./topbar";

function start(root: HTMLElement): void {
  const store = createStore();
  let history: History | null = null;

  const toast = h("div", { class: "toast", role: "status", "data-testid": "toast", hidden: true });
  let toastTimer: number | undefined;
  const notify = (message: string): void => {
    toast.textContent = message;
    toast.hidden = false;
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => (toast.hidden = true), 6000);
  };

  async function reloadSessions(): Promise<void> {
    if (!history) return;
    try {
      store.dispatch({ type: "sessions", sessions: await history.listSessions() });
    } catch (e) {
      notify(`Could not read chat history: ${toApiError(e).message}`);
    }
  }

  // Set once the shell's status broadcast is heard: the shell then tells every change
  // itself (a turn's end, a load's progress and end included), and nothing here needs
  // to ask again.
  let statusPushed = false;
  // Statuses heard so far. One pushed while an asked one was on its way is at least as
  // new, so that answer is not shown: it could undo what the shell told since (a load's
  // end, with nothing left to poll for it).
  let pushes = 0;
  async function askStatus(): Promise<AppStatus> {
    const before = pushes;
    const status = await api.appStatus();
    if (pushes === before) store.dispatch({ type: "status", status });
    return status;
  }

  async function refreshStatus(): Promise<void> {
    try {
      await askStatus();
    } catch {
      // The top bar keeps the last status; the next turn or poll retries.
    }
  }

  const dashboard = createDashboard(api);
  // A model that could not go where the settings asked says so once, in a toast.
  const placementNote = placementNotices();
  store.subscribe((state, action) => {
    if (action.type !== "status" || !state.status) return;
    dashboard.showStatus(state.status);
    const note = placementNote(state.status);
    if (note) notify(note);
  });
  const controller = createChatController({
    store,
    api,
    nextLocalId: localIds(),
    afterTurn: () => {
      void reloadSessions();
      if (!statusPushed) void refreshStatus();
      dashboard.refreshPerformance();
    },
  });

  const settings = createSettingsPanel(store, api);
  const topbar = createTopBar(store, api, selectTab, () => statusPushed);
  const chat = createChatView({ store, controller, openSettings: () => selectTab("settings") });

  async function openSession(id: string): Promise<void> {
    controller.stop();
    try {
      const messages = await topbar.waits.track("Opening chat…", api.openSession(id));
      store.dispatch({ type: "sessionOpened", id, messages });
      selectTab("chat");
    } catch (e) {
      notify(`Could not open the chat: ${toApiError(e).message}`);
    }
  }

  const sidebar = createSidebar(store, {
    newSession: () => {
      controller.stop();
      api
        .newSession()
        .then(() => {
          store.dispatch({ type: "sessionCleared" });
          selectTab("chat");
          chat.focusComposer();
          void refreshStatus();
          void reloadSessions();
        })
        .catch((e: unknown) => notify(`Could not start a chat: ${toApiError(e).message}`));
    },
    open: (id) => void openSession(id),
    rename: (id, title) => {
      api
        .renameSession(id, title)
        .then(() => store.dispatch({ type: "sessionRenamed", id, title }))
        .catch((e: unknown) => notify(`Could not rename: ${toApiError(e).message}`));
    },
    exportSession: (id) => {
      api
        .exportSession(id, "md")
        .then((path) => notify(`Saved to ${path}`))
        .catch((e: unknown) => notify(`Could not export: ${toApiError(e).message}`));
    },
    remove: (id) => {
      api
        .deleteSession(id)
        .then(() => {
          store.dispatch({ type: "sessionDeleted", id });
          void reloadSessions();
        })
        .catch((e: unknown) => notify(`Could not delete: ${toApiError(e).message}`));
    },
    search: (text) => (history ? history.search(text) : Promise.reject(new Error("history is not available"))),
  });

  // A downloaded model becomes the chat's model when none is usable yet (the first run).
  const getModels = createGetModelsPage(
    api,
    (model) => {
      notify(`${model.name} is installed: choose it in Settings, or chat with it now.`);
      void (async () => {
        try {
          const status = await api.appStatus();
          if (status.ready) return;
          const current = await api.getSettings();
          store.dispatch({ type: "status", status: await api.saveSettings({ ...current, model: model.name }) });
          selectTab("chat");
        } catch (e) {
          notify(`Could not switch to ${model.name}: ${toApiError(e).message}`);
        }
      })();
    },
    notify,
  );
  let searchedOnce = false;

  const panels: Record<Tab, HTMLElement> = {
    chat: chat.el,
    models: getModels.el,
    settings: settings.el,
    dashboard: dashboard.el,
  };
  const main = h("main", { class: "content" }, chat.el, getModels.el, settings.el, dashboard.el);
  root.replaceChildren(topbar.el, h("div", { class: "body" }, sidebar, main), toast);

  function selectTab(tab: Tab): void {
    store.dispatch({ type: "tab", tab });
    for (const [name, el] of Object.entries(panels)) el.hidden = name !== tab;
    dashboard.setVisible(tab === "dashboard" && document.visibilityState === "visible");
    if (tab === "settings") void settings.load();
    if (tab === "models" && !searchedOnce) {
      searchedOnce = true;
      void getModels.recommend();
      void getModels.search("");
    }
    if (tab === "chat") chat.focusComposer();
  }

  document.addEventListener("visibilitychange", () => {
    dashboard.setVisible(store.get().tab === "dashboard" && document.visibilityState === "visible");
  });
  on(document, "keydown", (e) => {
    if (e.key === "Escape" && store.get().streaming) {
      e.preventDefault();
      controller.stop();
    }
  });

  selectTab("chat");

  // Loading, switching and tray actions change the status without a UI call.
  onStatus((status) => {
    pushes += 1;
    store.dispatch({ type: "status", status });
  })
    .then(() => {
      statusPushed = true;
    })
    .catch(() => {
      // Without the broadcast the top bar still updates after each call and while loading.
    });

  void (async () => {
    try {
      const status = await askStatus();
      try {
        history = await openHistory(status.dbPath);
        await reloadSessions();
      } catch (e) {
        notify(`Chat history is unavailable: ${toApiError(e).message}`);
      }
      if (status.session) await openSession(status.session);
      // The first run: no model anywhere yet, so the app opens where one is got.
      if ((await api.listModels()).length === 0) selectTab("models");
    } catch (e) {
      notify(`Hearth's core did not answer: ${toApiError(e).message}`);
    }
  })();
}

const root = document.getElementById("app");
if (root) start(root);
