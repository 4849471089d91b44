"""End-to-end: the real desktop app (hearth-app) under Xvfb, driven through WebDriver
(tauri-driver in front of WebKitWebDriver), with the real embedded engine.

Run by `make e2e` (part of `make test`), which builds the app, starts Xvfb and sets
HEARTH_APP (the binary) and HEARTH_E2E_ARTIFACTS (where screenshots go). Each test
gets its own data directory; the models are the ones `make models` installed.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import warnings
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

APP = os.environ.get("HEARTH_APP", "")
LOCAL_HUB = os.environ.get("HEARTH_LOCAL_HUB", "")
ARTIFACTS = Path(os.environ.get("HEARTH_E2E_ARTIFACTS", "artifacts/e2e"))
MODELS = Path(os.environ.get("HEARTH_MODELS_DIR", str(Path.home() / ".local/share/hearth/models")))
CHAT_MODEL = "SmolLM2-135M-Instruct-Q4_1.gguf"
BASE_MODEL = "gemma-3-270m-Q4_K_M.gguf"


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay open until every port is known."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_port(port: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {limit} s")


def by_testid(testid: str) -> tuple:
    return (By.CSS_SELECTOR, f'[data-testid="{testid}"]')


class Desktop:
    """tauri-driver plus one app session over a given data directory."""

    def __init__(self, data_dir: Path, models_dir: Path = MODELS, extra_env: dict | None = None):
        self.data_dir = data_dir
        # WebKitWebDriver gets its own port too: its default (4445) may be held by a
        # driver left behind, and a session would then hang instead of failing.
        self.port, native_port = free_ports(2)
        env = dict(os.environ)
        env.update(
            HEARTH_DATA_DIR=str(data_dir),
            HEARTH_MODELS_DIR=str(models_dir),
            HEARTH_CONFIG_DIR=str(data_dir / "config"),
            HEARTH_SETTINGS=str(data_dir / "config" / "settings.toml"),
            HEARTH_LOG_DIR=str(data_dir / "logs"),
            HEARTH_EXPORT_DIR=str(data_dir / "exports"),
            HEARTH_THREADS="2",
        )
        env.update(extra_env or {})
        driver_bin = shutil.which("tauri-driver") or str(Path.home() / ".cargo/bin/tauri-driver")
        self.driver_proc = subprocess.Popen(
            [driver_bin, "--port", str(self.port), "--native-port", str(native_port), "--native-driver", shutil.which("WebKitWebDriver") or "WebKitWebDriver"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group: closing it ends WebKitWebDriver and the app too.
            start_new_session=True,
        )
        # tauri-driver starts WebKitWebDriver first and forwards the new-session
        # request to it: both must listen before the session is asked for (in well
        # under a second; 60 s only bounds a hang).
        wait_port(self.port, 60)
        wait_port(native_port, 60)
        options = ArgOptions()
        options.set_capability("browserName", "wry")
        options.set_capability("tauri:options", {"application": APP})
        self.driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{self.port}", options=options)
        # The page may still be loading (or reload once) when the session starts: element
        # lookups that fail meanwhile are retried until the deadline.
        self.wait = WebDriverWait(self.driver, 180, poll_frequency=0.2, ignored_exceptions=(WebDriverException,))

    def find(self, testid: str):
        return self.wait.until(EC.presence_of_element_located(by_testid(testid)))

    def all(self, testid: str):
        return self.driver.find_elements(*by_testid(testid))

    def click(self, testid: str) -> None:
        self.wait.until(EC.element_to_be_clickable(by_testid(testid))).click()

    def ready(self) -> None:
        """Waits until the engine has loaded the model (the status says ready)."""
        self.wait.until(lambda d: "ready" in d.find_element(*by_testid("status-phase")).text.lower())

    def send(self, text: str) -> None:
        composer = self.find("composer")
        composer.clear()
        composer.send_keys(text)
        composer.send_keys(Keys.ENTER)

    def replies(self):
        return [m for m in self.all("message") if m.get_attribute("data-role") == "assistant"]

    def wait_reply_done(self, count: int) -> None:
        self.wait.until(lambda d: len(self.replies()) >= count and not self.all("reply-streaming"))

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def close(self) -> None:
        try:
            self.driver.quit()
        except WebDriverException:
            pass
        group = self.driver_proc.pid
        try:
            os.killpg(group, signal.SIGTERM)
            self.driver_proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.driver_proc.wait(10)
        except ProcessLookupError:
            pass


def private_models(dir: Path) -> Path:
    """A models folder of this test's own holding the installed defaults (hard links
    where the disk allows, else copies): what a test makes there stays there."""
    models = dir / "models"
    models.mkdir()
    for name in (CHAT_MODEL, BASE_MODEL):
        source = MODELS / name
        if not source.exists():
            raise AssertionError(f"{source} is missing: run `make models`")
        try:
            os.link(source, models / name)
        except OSError:
            shutil.copy(source, models / name)
    return models


class DesktopTest(unittest.TestCase):
    def setUp(self):
        if not APP or not Path(APP).exists():
            raise AssertionError(f"HEARTH_APP ({APP!r}) is not the built app: run `make e2e`")
        # Selenium's Remote() warns about its own use of a deprecated argument (set here:
        # the unittest runner resets the warning filters before each run).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="selenium")
        self.dir = Path(tempfile.mkdtemp(prefix="hearth-e2e-"))
        self.models = private_models(self.dir)
        self.app = Desktop(self.dir, self.models)

    def tearDown(self):
        self.app.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_chat_streams_a_reply_and_stop_keeps_the_part(self):
        app = self.app
        app.ready()
        app.send("Name three colors.")
        streaming = app.find("reply-streaming")
        self.assertTrue(streaming.is_displayed())
        app.wait_reply_done(1)
        reply = app.replies()[-1]
        self.assertTrue(reply.text.strip(), "the reply is empty")
        badge = reply.find_element(*by_testid("badge"))
        self.assertIn("tok/s", badge.text)
        app.screenshot("chat")

        app.send("Write a very long story about a dragon who learns to bake bread.")
        app.find("reply-streaming")
        app.wait.until(lambda d: len(app.find("reply-streaming").text) > 10)
        app.click("stop")
        app.wait_reply_done(2)
        stopped = app.replies()[-1]
        self.assertTrue(stopped.find_elements(*by_testid("incomplete")), "a stopped reply is marked incomplete")

    def test_a_session_survives_a_restart_and_continues_on_another_model(self):
        app = self.app
        app.ready()
        app.send("My name is Ada.")
        app.wait_reply_done(1)
        app.close()

        self.app = app = Desktop(self.dir, self.models)
        app.ready()
        sessions = app.wait.until(lambda d: app.all("session-item"))
        # textContent, not .text: WebKitWebDriver's "visible text" leaves out the title
        # span inside the item's button although it is drawn (see the screenshot).
        labels = [s.get_attribute("textContent") for s in sessions]
        self.assertTrue(any("Ada" in label for label in labels), labels)
        # Export it as Markdown from its tools (shown on hover): a toast names the file.
        ActionChains(app.driver).move_to_element(sessions[0]).perform()
        sessions[0].find_element(By.CSS_SELECTOR, '[data-action="export"]').click()
        app.wait.until(lambda d: "Saved to" in app.find("toast").text)
        saved = Path(app.find("toast").text.removeprefix("Saved to ").strip())
        self.assertEqual(saved.parent, self.dir / "exports")
        self.assertIn("My name is Ada.", saved.read_text())
        sessions[0].click()
        app.wait.until(lambda d: len(app.all("message")) >= 2)

        app.click("tab-settings")
        # Pick the base model's option as a person would (a click on it): typing into a
        # <select> to jump to an option depends on the WebKitGTK version.
        options = app.wait.until(lambda d: [o for o in Select(app.find("setting-model")).options if o.text.startswith(BASE_MODEL.split(".")[0])])
        Select(app.find("setting-model")).select_by_index(int(options[0].get_attribute("index")))
        self.assertIn(
            BASE_MODEL.split(".")[0],
            app.find("setting-model").get_attribute("value") or "",
            [o.text for o in Select(app.find("setting-model")).options],
        )
        app.screenshot("settings")
        app.click("settings-save")
        app.click("tab-chat")
        # The new model loads in the background: wait until the status names it, ready.
        app.wait.until(lambda d: "gemma" in (app.find("status-model").get_attribute("textContent") or "").lower())
        app.ready()
        app.send("What is my name?")
        app.wait_reply_done(2)
        badge = app.replies()[-1].find_element(*by_testid("badge"))
        self.assertIn("gemma", badge.text.lower())

    def test_the_local_api_answers_the_openai_client_while_a_chat_reply_streams(self):
        import openai

        app = self.app
        app.ready()
        (port,) = free_ports(1)
        # Turned on in Settings as a person would: the switch, a port, a token, two replies at once.
        app.click("tab-settings")
        app.wait.until(lambda d: CHAT_MODEL in (app.find("setting-model").get_attribute("value") or ""))
        app.click("setting-apiEnabled")
        for testid, value in (("setting-apiPort", str(port)), ("setting-apiToken", "e2e-token"), ("setting-parallel", "2")):
            field = app.find(testid)
            field.clear()
            field.send_keys(value)
        app.screenshot("settings-api")
        app.click("settings-save")
        app.click("tab-chat")
        # The worker restarts with two sequences; the top bar says the API serves.
        app.wait.until(lambda d: app.find("status-api").text == "API · 0 running")
        app.ready()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="e2e-token", max_retries=0, timeout=120)
        model = CHAT_MODEL.removesuffix(".gguf")
        self.assertEqual([m.id for m in client.models.list().data], [model])
        with self.assertRaises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()

        app.send("Write a very long story about a dragon who learns to bake bread.")
        app.wait.until(lambda d: len(app.find("reply-streaming").text) > 10)
        # A whole reply while the chat streams: greedy, and right. With a system message:
        # without one, SmolLM2's own chat template adds its default ("You are a helpful AI
        # assistant named SmolLM…"), after which this 135M model's greedy answer to the
        # question is French word salad (as in llama-server, which renders the same template).
        answer = client.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            max_tokens=24,
            temperature=0,
        )
        self.assertIn("Paris", answer.choices[0].message.content)
        self.assertTrue(app.all("reply-streaming"), "the chat's reply ended before the API answered: nothing overlapped")

        # A streamed reply: counted in the top bar while it runs.
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            max_tokens=160,
            temperature=0,
            stream=True,
        )
        pieces = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if not pieces:
                    app.wait.until(lambda d: app.find("status-api").text == "API · 1 running")
                    app.screenshot("chat-beside-api")
                pieces.append(chunk.choices[0].delta.content)
        self.assertGreater(len("".join(pieces).split()), 20, pieces)

        app.wait_reply_done(1)
        reply = app.replies()[-1]
        self.assertGreater(len(reply.text.split()), 20, reply.text)
        self.assertIn("tok/s", reply.find_element(*by_testid("badge")).text)
        app.wait.until(lambda d: app.find("status-api").text == "API · 0 running")
        app.click("tab-dashboard")
        self.assertEqual(app.find("dash-api").text, "0 requests running")
        self.assertIn(f"http://127.0.0.1:{port}/v1", app.find("dash-api-detail").text)

    def test_the_dashboard_shows_live_numbers(self):
        app = self.app
        app.ready()
        app.click("tab-dashboard")
        cpu = app.find("dash-cpu")
        first = cpu.text
        app.wait.until(lambda d: app.find("dash-cpu").text not in ("", "—"))
        ram = app.find("dash-ram").text
        self.assertRegex(ram, r"\d")
        app.screenshot("dashboard")
        # Live: the chart keeps gaining samples (one a second while the tab is visible).
        chart = app.find("dash-cpu-chart")
        samples = int(chart.get_attribute("data-samples") or "0")
        # A sample a second; 60 s only bounds a hang.
        WebDriverWait(app.driver, 60).until(
            lambda d: int(app.find("dash-cpu-chart").get_attribute("data-samples") or "0") > samples
        )

    def test_quantize_shows_the_prediction_progress_and_the_measured_result(self):
        app = self.app
        app.ready()
        app.click("tab-settings")
        app.wait.until(lambda d: CHAT_MODEL in (app.find("setting-model").get_attribute("value") or ""))
        app.click("quantize-open")
        app.wait.until(lambda d: app.find("quantize-dialog").is_displayed())
        Select(app.find("quantize-type")).select_by_visible_text("Q8_0")
        # The prediction before anything is written: size, fit here, free space.
        app.wait.until(lambda d: "SmolLM2-135M-Instruct-Q8_0.gguf: about" in app.find("quantize-plan").text)
        plan = app.find("quantize-plan").text
        self.assertIn("runs on the CPU", plan)
        self.assertIn("Free space", plan)
        self.assertFalse((self.models / "SmolLM2-135M-Instruct-Q8_0.gguf").exists())
        # Q4_1 is already quantized: Start waits for consent.
        self.assertFalse(app.find("quantize-start").is_enabled())
        app.click("quantize-requantize")
        app.screenshot("quantize-plan")
        app.click("quantize-start")
        # The bar moves through the tensors, then through the measurement's windows.
        seen = set()

        def progressed(_):
            text = app.find("quantize-progress-text").text
            seen.add(text.split(":")[0])
            return text.startswith("Measuring") and float(app.find("quantize-progress").get_attribute("value") or 0) > 0

        app.wait.until(progressed)
        self.assertIn("Quantizing", seen)
        app.screenshot("quantize-progress")
        app.wait.until(lambda d: app.find("quantize-result").is_displayed())
        result = app.find("quantize-result").text
        self.assertRegex(result, r"^Q8_0: \d\.\d× larger than Q4_1 \(\d+\.\d MB\), top token same as Q4_1 in \d+% of positions")
        # No screenshot here: with this WebKitGTK under Xvfb a screenshot of the dialog
        # just after the job ends never returns (one taken after closing it does, and so
        # do those taken while it runs), so the result is read as text above.
        app.click("quantize-close")

        # The model list now has the new file, with its measured figures on its card.
        select = Select(app.find("setting-model"))
        option = app.wait.until(lambda d: [o for o in select.options if o.text.startswith("SmolLM2-135M-Instruct-Q8_0")])
        select.select_by_index(int(option[0].get_attribute("index")))
        measured = app.wait.until(lambda d: app.find("model-measured")).text
        self.assertIn("vs SmolLM2-135M-Instruct-Q4_1.gguf: KL", measured)
        self.assertIn("same top token", measured)
        self.assertTrue((self.models / "SmolLM2-135M-Instruct-Q8_0.gguf").exists())
        self.assertEqual(
            sorted(p.name for p in self.models.iterdir()),
            sorted([BASE_MODEL, CHAT_MODEL, "SmolLM2-135M-Instruct-Q8_0.gguf"]),
            "no partial file left",
        )
        app.screenshot("quantize-model-card")


    def test_first_run_opens_get_models_and_a_download_becomes_the_chat_model(self):
        if not LOCAL_HUB or not Path(LOCAL_HUB).exists():
            raise AssertionError(f"HEARTH_LOCAL_HUB ({LOCAL_HUB!r}) is not the built local Hub: run `make e2e`")
        source = self.models / CHAT_MODEL
        # A repository the first run's recommendations try (the others are not on this Hub).
        repo = "bartowski/SmolLM2-135M-Instruct-GGUF"
        # About 5 seconds for the file: the bar is seen moving.
        hub = subprocess.Popen(
            [LOCAL_HUB, "--throttle", "20000000", f"{repo}={source}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = json.loads(hub.stdout.readline())["url"]
            self.app.close()
            empty = self.dir / "empty-models"
            empty.mkdir()
            self.app = Desktop(
                self.dir / "first-run",
                empty,
                {"HF_ENDPOINT": url, "OLLAMA_MODELS": str(self.dir / "no-ollama"), "HF_TOKEN": ""},
            )
            app = self.app
            # No model anywhere: the app opens on Get models, listing the Hub's repositories.
            app.wait.until(lambda d: app.find("get-models").is_displayed())
            # Recommended for this machine: the one candidate this Hub has, judged from its header.
            app.wait.until(lambda d: app.all("hub-pick"))
            self.assertIn(CHAT_MODEL, app.all("hub-pick")[0].text)
            app.wait.until(lambda d: any(r.text == repo for r in app.all("hub-repo")))
            next(r for r in app.all("hub-repo") if r.text == repo).click()
            app.wait.until(lambda d: app.all("hub-file"))
            badge = app.find("fit-badge")
            self.assertIn(badge.get_attribute("data-badge"), ("gpu", "partialGpu", "cpu"), badge.get_attribute("title"))
            self.assertIn("Recommended", app.all("hub-file")[0].text)
            app.click("hub-download")
            seen = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                value = float(app.find("download-progress").get_attribute("value") or 0)
                if not seen or value != seen[-1]:
                    seen.append(value)
                    if 0 < value < 1 and len(seen) == 2:
                        app.screenshot("get-models-downloading")
                if value >= 1:
                    break
                time.sleep(0.1)
            app.screenshot("get-models-downloaded")
            between = [v for v in seen if 0 < v < 1]
            self.assertGreaterEqual(len(between), 2, f"the bar did not move: {seen}")
            self.assertEqual(between, sorted(between), seen)
            self.assertEqual(seen[-1], 1.0, seen)
            downloaded = empty / CHAT_MODEL
            self.assertEqual(
                hashlib.sha256(downloaded.read_bytes()).hexdigest(),
                hashlib.sha256(source.read_bytes()).hexdigest(),
            )
            # The new model becomes the chat's model, and the chat uses it.
            app.wait.until(lambda d: app.find("composer").is_displayed())
            app.ready()
            app.send("Say hello.")
            app.wait_reply_done(1)
            self.assertTrue(app.replies()[0].text.strip())
        finally:
            hub.stdin.close()
            hub.wait(10)
            hub.stdout.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
