"""The latent-space explorer: a static, offline web page that decodes each VAE's latents in the browser.

    python -m tools.web build --artifacts artifacts --out dist/web     # make web
    python -m tools.web serve --site dist/web --port 8000              # make web-serve (127.0.0.1 only)
    python -m tools.web bench --artifacts artifacts --reports reports  # make web-bench

The page (``site/``) runs each model's exported ONNX decoders (int8 and float32) with onnxruntime-web, a
browser runtime installed from npm at a pinned version (``package.json``, ``npm ci``); the build copies the
runtime's WASM and the decoders with their ``manifest.json`` into one self-contained folder.
"""
