"""The web UI's pieces: pure request handlers (no gradio) and the gradio layout.

``core`` holds settings, upload validation, run discovery and work-dir handling; the
``imagine``, ``sonify`` and ``rate`` modules turn one request into a plain view object;
``app`` is the only module that imports gradio, and only inside :func:`app.build_app`.
"""
