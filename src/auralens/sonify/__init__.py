"""Sonify: map an audio model's hidden states into a codec latent and listen to them.

Pipeline (each step a module, each with a CLI command under ``auralens sonify``):

* :mod:`~auralens.sonify.prepare`  — embeddings ``[frames, dim]`` and latents
  ``[latent_dim, frames]`` for every clip, in the content-addressed cache (``prepare``);
* :mod:`~auralens.sonify.align`    — channel-first orientation, AST patch-grid order and
  frame-count mapping (interp / learned / dense);
* :mod:`~auralens.sonify.gates`    — the 12 gating layers ``v0``–``v11``;
* :mod:`~auralens.sonify.train`    — MSE training, lr grids, ablations (``train``);
* :mod:`~auralens.sonify.checkpoint` — safetensors checkpoints with a JSON header;
* :mod:`~auralens.sonify.render`   — audio through extractor → gate → decoder (``render``);
* :mod:`~auralens.sonify.postprocess` — ``none, peak, minmax, threshold:P, square, wiener``;
* :mod:`~auralens.sonify.sweep`    — one gate per extractor layer (``sweep``).
"""
