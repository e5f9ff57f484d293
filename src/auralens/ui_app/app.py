"""The gradio layout: three tabs wired to the pure handlers in this package.

gradio is imported inside :func:`build_app` and :func:`serve` only, so importing this
module (and running the CLI) stays fast.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from auralens.ui_app import imagine as imagine_h
from auralens.ui_app import rate as rate_h
from auralens.ui_app import sonify as sonify_h
from auralens.ui_app.core import (
    MIN_UPLOAD_DURATION_S,
    UIError,
    UISettings,
    error_md,
    human_duration,
    md_escape,
    upload_formats,
)

log = logging.getLogger(__name__)

#: Audio players reserved for separated sources (separators return ≤ 8 estimates).
MAX_SOURCE_SLOTS = 8

CSS = """
#imagine-description textarea {font-size: 1.05rem;}
.status-line {min-height: 1.5em;}
#imagine-activity th, #imagine-timings th, #imagine-captions th {white-space: nowrap;}
#imagine-activity td:nth-child(-n+3) {white-space: nowrap;}
"""


def _status(ok: bool, text: str) -> str:
    if not text:
        return ""
    return text if ok else error_md(text)


def build_app(settings: UISettings) -> Any:
    """Build the gradio ``Blocks`` for ``settings`` (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr
    from gradio.utils import get_upload_folder

    if not settings.upload_roots:
        settings.upload_roots = [Path(get_upload_folder()).resolve()]

    # gr.Audio offers the browser's whole audio/* list; the formats read here are named
    limits = (f"Formats: {md_escape(upload_formats())}. Limits: {settings.max_upload_mb:g} MB "
              f"and {MIN_UPLOAD_DURATION_S:g} s to {human_duration(settings.max_duration_s)} "
              "per clip.")

    def run_choices() -> list[tuple[str, str]]:
        return [(info.label, key) for key, info in sonify_h.list_runs(settings).items()]

    with gr.Blocks(title="auralens", analytics_enabled=False) as demo:
        gr.Markdown("# auralens\nListen to what audio models perceive, and turn sound "
                    "scenes into images.")
        with gr.Tab("Imagine", id="imagine"):
            gr.Markdown("Upload or record a sound mixture: it is separated into sources, each "
                        f"active source is captioned, and the captions are composed into one "
                        f"scene description. {limits}")
            with gr.Row():
                im_input = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                    label="Mixture", elem_id="imagine-input")
            im_run = gr.Button("Run imagine", variant="primary", elem_id="imagine-run")
            im_status = gr.Markdown(elem_id="imagine-status", elem_classes="status-line")
            with gr.Row():
                with gr.Column(scale=3):
                    im_desc = gr.Textbox(label="Scene description", lines=4, interactive=False,
                                         elem_id="imagine-description")
                    with gr.Accordion("Reasoning", open=False):
                        im_reason = gr.Textbox(show_label=False, lines=4, interactive=False,
                                               elem_id="imagine-reasoning")
                    im_captions = gr.Markdown(elem_id="imagine-captions")
                with gr.Column(scale=2):
                    im_activity = gr.Markdown(elem_id="imagine-activity")
                    im_timings = gr.Markdown(elem_id="imagine-timings")
                    # a zip: report.html links its players and pictures relatively,
                    # so it is only readable beside them
                    im_report = gr.File(label="Report (zip: HTML report, input and media)",
                                        visible=False, interactive=False,
                                        elem_id="imagine-report")
            with gr.Row():
                im_image = gr.Image(label="Image", type="filepath", visible=False,
                                    interactive=False, elem_id="imagine-image")
                im_image_note = gr.Markdown(elem_id="imagine-image-note")
            gr.Markdown("### Separated sources")
            im_sources = []
            with gr.Row():
                for i in range(MAX_SOURCE_SLOTS):
                    # numbered from 0, as sources/source0.wav … and report.html are
                    im_sources.append(gr.Audio(label=f"source {i}", visible=False,
                                               interactive=False, type="filepath",
                                               elem_id=f"imagine-source-{i + 1}",
                                               min_width=220))

            def on_imagine(path: str | None) -> list[Any]:
                try:
                    view = imagine_h.run_imagine(path, settings)
                except Exception as exc:  # noqa: BLE001 - last resort: never crash the page
                    log.exception("imagine request failed")
                    view = imagine_h.ImagineView(ok=False, status=f"unexpected error: {exc}")
                players = []
                for i in range(MAX_SOURCE_SLOTS):
                    if i < len(view.sources):
                        s = view.sources[i]
                        players.append(gr.update(value=str(s.path), label=s.label, visible=True))
                    else:
                        players.append(gr.update(value=None, visible=False))
                image = (gr.update(value=str(view.image), visible=True) if view.image
                         else gr.update(value=None, visible=False))
                activity = view.activity_md if view.sources else ""
                captions = ("### Captions\n" + view.captions_md) if view.sources else ""
                timings = ("### Timings\n" + view.timings_md) if view.timings else ""
                report = (gr.update(value=str(view.bundle), visible=True) if view.bundle
                          else gr.update(value=None, visible=False))
                return [_status(view.ok, view.status), view.description, view.reasoning,
                        captions, activity, timings, report, image, view.image_note, *players]

            im_run.click(on_imagine, inputs=[im_input],
                         outputs=[im_status, im_desc, im_reason, im_captions, im_activity,
                                  im_timings, im_report, im_image, im_image_note, *im_sources],
                         concurrency_limit=1)

        with gr.Tab("Sonify", id="sonify"):
            gr.Markdown("Pick a trained run and a clip from its test renders (or upload one) "
                        "to compare the original with its sonification.")
            with gr.Row():
                so_run = gr.Dropdown(choices=[], label="Trained run", elem_id="sonify-run",
                                     scale=4)
                so_refresh = gr.Button("Refresh runs", scale=1, elem_id="sonify-refresh")
            so_summary = gr.Markdown(elem_id="sonify-summary")
            with gr.Row():
                so_clip = gr.Dropdown(choices=[], label="Clip", elem_id="sonify-clip")
                so_post = gr.Dropdown(choices=[], label="Post-processing", elem_id="sonify-post")
            so_upload = gr.Audio(sources=["upload"], type="filepath",
                                 label=f"Or upload a clip (choose '{sonify_h.UPLOAD_CHOICE}')",
                                 elem_id="sonify-upload")
            so_go = gr.Button("Sonify", variant="primary", elem_id="sonify-go")
            so_status = gr.Markdown(elem_id="sonify-status", elem_classes="status-line")
            with gr.Row():
                so_orig = gr.Audio(label="Original", interactive=False, type="filepath")
                so_son = gr.Audio(label="Sonification", interactive=False, type="filepath")
                so_ceil = gr.Audio(label="Codec ceiling", interactive=False, type="filepath",
                                   visible=False)
            with gr.Row(elem_id="sonify-plots"):
                so_plots = [gr.Image(type="filepath", interactive=False, show_label=True,
                                     label=name, buttons=["download", "fullscreen"])
                            for name in ("waveforms", "spectrograms")]
            so_metrics = gr.Markdown(elem_id="sonify-metrics")

        with gr.Tab("Rate", id="rate"):
            gr.Markdown("Rate how well a sonification matches its original: **visual** "
                        "(spectrogram) and **audio** (listening), each from 1 (poor) to 5 "
                        f"(excellent). Ratings are saved to `{md_escape(settings.ratings_path)}`.")
            with gr.Row():
                ra_run = gr.Dropdown(choices=[], label="Trained run", elem_id="rate-run", scale=4)
                ra_refresh = gr.Button("Refresh runs", scale=1)
            ra_summary = gr.Markdown(elem_id="rate-summary")
            with gr.Row():
                ra_clip = gr.Dropdown(choices=[], label="Clip", elem_id="rate-clip")
                ra_post = gr.Dropdown(choices=[], label="Post-processing", elem_id="rate-post")
            ra_load = gr.Button("Load clip")
            with gr.Row():
                ra_orig = gr.Audio(label="Original", interactive=False, type="filepath",
                                   elem_id="rate-original")
                ra_son = gr.Audio(label="Sonification", interactive=False, type="filepath",
                                  elem_id="rate-sonified")
            with gr.Row():
                ra_plots = [gr.Image(type="filepath", interactive=False, label=name,
                                     buttons=["download", "fullscreen"])
                            for name in ("waveforms", "spectrograms")]
            with gr.Row():
                ra_visual = gr.Slider(1, 5, value=3, step=1, label="Visual (1–5)",
                                      elem_id="rate-visual")
                ra_audio = gr.Slider(1, 5, value=3, step=1, label="Audio (1–5)",
                                     elem_id="rate-audio")
            with gr.Row():
                ra_rater = gr.Textbox(label="Rater (optional)", max_lines=1,
                                      info="Each unnamed rating counts as another rater; with "
                                           "a name, rating a clip again replaces your mark.")
                ra_comment = gr.Textbox(label="Comment (optional)", max_lines=2)
            ra_save = gr.Button("Save rating", variant="primary", elem_id="rate-save")
            ra_status = gr.Markdown(elem_id="rate-status", elem_classes="status-line")
            gr.Markdown("### Mean ratings")
            ra_agg = gr.Markdown(elem_id="rate-aggregate")

        # ------------------------------------------------------------------ wiring
        def refresh_runs() -> list[Any]:
            choices = run_choices()
            note = "" if choices else error_md(sonify_h.no_runs_message(settings))
            value = choices[0][1] if choices else None
            return [gr.update(choices=choices, value=value), note]

        def pick_run(key: str | None, with_upload: bool) -> list[Any]:
            runs = sonify_h.list_runs(settings)
            if not key or key not in runs:
                return [gr.update(choices=[], value=None), gr.update(choices=[], value=None), ""]
            info = runs[key]
            clips = sonify_h.clip_choices(info) if with_upload else list(info.clips)
            posts = sonify_h.post_choices(info) if with_upload else rate_h.rating_choices(info)
            return [gr.update(choices=clips, value=clips[0] if clips else None),
                    gr.update(choices=posts, value=posts[0] if posts else None),
                    sonify_h.run_summary(info)]

        def show(key: str | None, clip: str | None, post: str | None,
                 upload: str | None) -> list[Any]:
            try:
                view = sonify_h.sonify_clip(key, clip, post, upload, settings)
            except Exception as exc:  # noqa: BLE001
                log.exception("sonify request failed")
                view = sonify_h.SonifyView(ok=False, status=f"unexpected error: {exc}")
            ceil = (gr.update(value=str(view.ceiling), visible=True) if view.ceiling
                    else gr.update(value=None, visible=False))
            images = [gr.update(value=str(p), label=cap, visible=True) for p, cap in view.plots]
            images = (images + [gr.update(value=None, visible=not view.plots)] * 2)[:2]
            return [_status(view.ok, view.status),
                    str(view.original) if view.original else None,
                    str(view.sonified) if view.sonified else None, ceil,
                    *images, view.metrics_md if view.ok else ""]

        so_refresh.click(refresh_runs, outputs=[so_run, so_status])
        so_run.change(lambda k: pick_run(k, True), inputs=[so_run],
                      outputs=[so_clip, so_post, so_summary])
        so_go.click(show, inputs=[so_run, so_clip, so_post, so_upload],
                    outputs=[so_status, so_orig, so_son, so_ceil, *so_plots, so_metrics],
                    concurrency_limit=1)

        def rate_load(key: str | None, clip: str | None, post: str | None) -> list[Any]:
            status, orig, son, _ceil, img1, img2, _metrics = show(key, clip, post, None)
            return [status, orig, son, img1, img2]

        def rate_save(key: str | None, clip: str | None, post: str | None, visual: Any,
                      audio: Any, rater: str | None, comment: str | None) -> list[str]:
            runs = sonify_h.list_runs(settings)
            if not runs:
                return [error_md(sonify_h.no_runs_message(settings)),
                        rate_h.aggregate_md(settings)]
            try:
                msg = rate_h.save(key, clip, post, visual, audio, rater, comment, settings, runs)
            except UIError as exc:
                msg = error_md(str(exc))
            except Exception as exc:  # noqa: BLE001
                log.exception("saving a rating failed")
                msg = error_md(f"could not save the rating: {exc}")
            return [msg, rate_h.aggregate_md(settings)]

        def rate_clear(picked: str | None) -> list[Any]:
            # a rating is saved for the run, clip and variant picked in the dropdowns, so
            # what was loaded for another pick must not keep playing; with nothing picked the
            # status keeps the refresh's "no runs" note
            return ["" if picked else gr.update(), None, None, gr.update(value=None),
                    gr.update(value=None)]

        ra_refresh.click(refresh_runs, outputs=[ra_run, ra_status])
        ra_run.change(lambda k: [*pick_run(k, False), *rate_clear(k)], inputs=[ra_run],
                      outputs=[ra_clip, ra_post, ra_summary, ra_status, ra_orig, ra_son,
                               *ra_plots])
        for picker in (ra_clip, ra_post):
            picker.change(rate_clear, inputs=[picker],
                          outputs=[ra_status, ra_orig, ra_son, *ra_plots])
        ra_load.click(rate_load, inputs=[ra_run, ra_clip, ra_post],
                      outputs=[ra_status, ra_orig, ra_son, *ra_plots])
        ra_save.click(rate_save, inputs=[ra_run, ra_clip, ra_post, ra_visual, ra_audio,
                                         ra_rater, ra_comment], outputs=[ra_status, ra_agg])

        def on_load() -> list[Any]:
            so = refresh_runs()
            ra = refresh_runs()
            return [*so, *ra, rate_h.aggregate_md(settings)]

        demo.load(on_load, outputs=[so_run, so_status, ra_run, ra_status, ra_agg])
    return demo


def serve(settings: UISettings, host: str = "127.0.0.1", port: int = 7860, *,
          block: bool = True) -> Any:
    """Build and launch the app; returns the Blocks (already serving when ``block=False``)."""
    demo = build_app(settings)
    demo.queue(default_concurrency_limit=1, max_size=16)
    assert settings.work_root is not None
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=False,
        max_file_size=settings.max_upload_bytes,
        allowed_paths=[str(settings.work_root)],
        footer_links=[],
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        prevent_thread_lock=not block,
        quiet=not block,
        css=CSS,
    )
    return demo
