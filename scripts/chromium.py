"""How the browser tests and the README screenshot start Chromium."""

# Headless Debian chromium (Playwright's own browser download fails offline): no background network,
# WebGL through SwiftShader where there is no GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-unsafe-swiftshader",
]
