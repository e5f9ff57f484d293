"""The web UI in a real browser: start ``auralens ui``, drive it with Playwright.

Needs the system Chromium at /usr/bin/chromium (``scripts/install_test_tools.sh``) and the
playwright Python package; skips cleanly without them. No browser is ever downloaded.

Set ``AURALENS_UPDATE_DOCS_SCREENSHOT=1`` to refresh docs/ui-imagine.png from this run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from launch import free_port

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
#: Seconds allowed for the offline imagine pipeline on a busy 2-core machine.
IMAGINE_TIMEOUT_S = 240




def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the UI exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the UI did not answer at {url} within {timeout:.0f} s")


def _make_run(runs: Path) -> None:
    """A trained-run directory shaped like ``auralens sonify train`` output (renders only)."""
    import soundfile as sf

    run = runs / "ast-layer6"
    sr = 16000
    t = np.arange(sr) / sr
    clean = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    rough = clean + 0.05 * np.random.default_rng(1).standard_normal(sr).astype(np.float32)
    for sub, wave in (("original", clean), ("ceiling", clean * 0.98), ("raw", rough)):
        (run / "renders" / sub).mkdir(parents=True)
        sf.write(run / "renders" / sub / "dog_01.wav", wave, sr)
    (run / "run.json").write_text(json.dumps({"config": {
        "encoder": "ast:tiny", "layer": 6, "codec": "mel", "gate": "conv1d"}}))
    (run / "history.jsonl").write_text('{"epoch": 0, "loss": 1.0}\n')


#: The committed offline models the imagine defaults load.
PRESETS = ROOT / "src" / "auralens" / "presets"
DEFAULT_MODELS = [PRESETS / "tdcnpp-tiny" / "model.safetensors", PRESETS / "classifier"]


def _imagine_config(tiny_model) -> dict[str, str] | None:  # noqa: ANN001 - the fixture
    """The offline defaults when their committed models exist, else tiny random models."""
    if all(p.exists() for p in DEFAULT_MODELS):
        return None
    return {"separator": f"tdcnpp:{tiny_model('tdcnpp') / 'model.safetensors'}",
            "captioner": f"classifier:{tiny_model('ast_classifier')}"}


@pytest.fixture(scope="module")
def ui_url(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Iterator[str]:  # noqa: ANN001
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (run scripts/install_test_tools.sh)")
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("gradio")
    base = tmp_path_factory.mktemp("ui")
    runs = base / "runs"
    _make_run(runs)
    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(base / "uploads"), "TMPDIR": str(base),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "AURALENS_NO_PROGRESS": "1"}
    log = open(base / "server.log", "wb")  # noqa: SIM115 - closed below
    config = _imagine_config(tiny_model)
    if config is None:  # exactly what `auralens ui` runs
        cmd = [sys.executable, "-c", "import sys; from auralens.cli import main; sys.exit(main())",
               "ui", "--host", "127.0.0.1", "--port", str(port), "--runs", str(runs)]
    else:
        launcher = ("import json, sys; from auralens.ui import launch; "
                    "launch('127.0.0.1', int(sys.argv[1]), sys.argv[2], "
                    "imagine_config=json.loads(sys.argv[3]))")
        cmd = [sys.executable, "-c", launcher, str(port), str(runs), json.dumps(config)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc)
        yield url
    except Exception:
        log.flush()
        print((base / "server.log").read_text(errors="replace")[-4000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(ui_url: str) -> Iterator[object]:
    """One headless Chromium for the module (a fresh page per test)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: object, ui_url: str) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    try:
        pg = ctx.new_page()
        # "networkidle" never settles while gradio keeps its event stream open on a slow
        # machine; wait for the page, then for the tabs gradio renders last
        pg.goto(ui_url, wait_until="load", timeout=60_000)
        pg.get_by_role("tab", name="Rate").wait_for(timeout=60_000)
        yield pg
    finally:
        ctx.close()


def _mixture(path: Path, seconds: float = 3.0, sr: int = 16000) -> Path:
    """Church bells + rain from the procedural sound library, summed."""
    from auralens.audio import write
    from auralens.data.synth import generate_clip

    rng = np.random.default_rng(7)
    bells = generate_clip("church_bells", rng, sample_rate=sr, duration=seconds)
    rain = generate_clip("rain", rng, sample_rate=sr, duration=seconds)
    mix = bells + rain
    return write(path, (mix / max(1.0, float(np.abs(mix).max()) / 0.9)).astype(np.float32), sr)


def _md_text(page: object, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()  # type: ignore[attr-defined]


def test_imagine_end_to_end(page: object, tmp_path: Path) -> None:
    mix = _mixture(tmp_path / "bells_and_rain.wav")
    page.locator("#imagine-input input[type=file]").set_input_files(str(mix))  # type: ignore[attr-defined]
    # the player appears once the upload finished
    page.locator("#imagine-input audio, #imagine-input .waveform-container, "  # type: ignore[attr-defined]
                 "#imagine-input [data-testid='waveform-Mixture']").first.wait_for(timeout=30_000)
    page.locator("#imagine-run").click()  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => { const a = document.querySelector('#imagine-activity');"
        " const s = document.querySelector('#imagine-status');"
        " return (a && a.innerText.includes('Sources kept')) ||"
        " (s && s.innerText.includes('Error')); }",
        timeout=IMAGINE_TIMEOUT_S * 1000)
    status = _md_text(page, "imagine-status")
    assert "Error" not in status, status

    activity = _md_text(page, "imagine-activity")
    m = re.search(r"Sources kept: (\d+) of (\d+)", activity)
    assert m, activity
    kept, total = int(m.group(1)), int(m.group(2))
    assert total >= 2 and 1 <= kept <= total
    assert activity.count("kept") - 1 == kept  # one "kept" per kept row, plus the heading
    # one visible player per separated source, labelled kept/dropped
    labels = [page.locator(f"#imagine-source-{i + 1}").inner_text()  # type: ignore[attr-defined]
              for i in range(total)]
    assert sum("(kept" in t for t in labels) == kept
    assert not page.locator(f"#imagine-source-{total + 1}").is_visible()  # type: ignore[attr-defined]

    captions = _md_text(page, "imagine-captions")
    assert "Captions" in captions
    cap_rows = [ln for ln in captions.splitlines() if re.match(r"^\d+\s+\S", ln.strip())]
    assert len(cap_rows) == kept, captions  # one caption per kept source
    description = page.locator("#imagine-description textarea").input_value()  # type: ignore[attr-defined]
    assert len(description.split()) >= 3, description
    assert "No image model is configured" in _md_text(page, "imagine-image-note")
    timings = _md_text(page, "imagine-timings")
    assert "total" in timings and "separate" in timings.lower()

    shot = tmp_path / "ui-imagine.png"
    page.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
    if os.environ.get("AURALENS_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "ui-imagine.png")


def test_imagine_without_audio_shows_a_message(page: object) -> None:
    page.locator("#imagine-run").click()  # type: ignore[attr-defined]
    page.locator("#imagine-status", has_text="no audio given").wait_for(timeout=30_000)  # type: ignore[attr-defined]


def test_sonify_tab_shows_a_discovered_run(page: object, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Sonify").click()  # type: ignore[attr-defined]
    page.locator("#sonify-summary", has_text="ast:tiny").wait_for(timeout=30_000)  # type: ignore[attr-defined]
    summary = _md_text(page, "sonify-summary")
    assert "conv1d" in summary and "raw" in summary
    page.locator("#sonify-go").click()  # type: ignore[attr-defined]
    page.locator("#sonify-metrics", has_text="env_corr").wait_for(timeout=60_000)  # type: ignore[attr-defined]
    metrics = _md_text(page, "sonify-metrics")
    env = re.search(r"env_corr\s+([-\d.e]+)", metrics)
    assert env and float(env.group(1)) > 0.5, metrics  # the renders share one envelope
    assert page.locator("#sonify-plots img").count() >= 1  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path / "ui-sonify.png"), full_page=True)  # type: ignore[attr-defined]


def test_rate_tab_saves_and_aggregates(page: object) -> None:
    page.get_by_role("tab", name="Rate").click()  # type: ignore[attr-defined]
    from playwright.sync_api import expect

    expect(page.locator("#rate-clip input")).to_have_value("dog_01", timeout=30_000)  # type: ignore[attr-defined]
    expect(page.locator("#rate-post input")).to_have_value("raw")  # type: ignore[attr-defined]
    page.locator("#rate-save").click()  # type: ignore[attr-defined]
    page.locator("#rate-status", has_text="saved:").wait_for(timeout=30_000)  # type: ignore[attr-defined]
    assert "visual 3, audio 3" in _md_text(page, "rate-status")
    agg = _md_text(page, "rate-aggregate")
    assert "ast-layer6/raw" in agg and "3.00" in agg
