"""Draws results.png from bench/run's results JSON: req/s (top) and p99 latency
(bottom) per app, one bar per server. Run by bench/run in target/bench-venv:

    target/bench-venv/bin/python bench/chart.py RESULTS.json OUT.png
"""

import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

APP_TITLES = {
    "hello": "hello",
    "demo": "demo_app",
    "flask": "Flask hello",
    "stream": "1 MiB streamed",
    "rust": "Rust guest hello",
}
COLOURS = {
    "wsgi-wasm": "#2b7bba",
    "wsgi-wasm (request)": "#8cbde6",
    "granian": "#e07b39",
    "gunicorn": "#4a9a5b",
    "waitress": "#9c6bb3",
    "wasmtime serve": "#7a7a7a",
}


def main(json_path, png_path):
    results = json.load(open(json_path))
    rows = [r for r in results["rows"] if r.get("ok")]
    apps = [app for app in APP_TITLES if any(r["app"] == app for r in rows)]
    if not apps:
        sys.exit("no successful rows to draw")
    fig, axes = plt.subplots(2, len(apps), figsize=(3.3 * len(apps), 7), squeeze=False)
    for col, app in enumerate(apps):
        app_rows = [r for r in rows if r["app"] == app]
        names = [r["server"] for r in app_rows]
        colours = [COLOURS.get(n, "#bbbbbb") for n in names]
        labels = [n.replace(" (", "\n(") for n in names]
        for row_index, (key, ylabel, fmt) in enumerate([
            ("rps", "requests/s (higher is better)", lambda v: f"{v:,.0f}"),
            ("p99_ms", "p99 latency, ms (lower is better)", lambda v: f"{v:.1f}" if v < 100 else f"{v:,.0f}"),
        ]):
            ax = axes[row_index][col]
            values = [r[key] if not math.isnan(r[key]) else 0 for r in app_rows]
            bars = ax.bar(range(len(values)), values, color=colours)
            for bar, value in zip(bars, values):
                ax.annotate(fmt(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
            ax.set_xticks(range(len(values)), labels, rotation=40, ha="right", fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
            ax.margins(y=0.15)
            if row_index == 0:
                ax.set_title(APP_TITLES[app], fontsize=10)
            if col == 0:
                ax.set_ylabel(ylabel, fontsize=9)
            ax.spines[["top", "right"]].set_visible(False)
    smoke = " - SMOKE RUN, figures meaningless" if results["mode"] == "smoke" else ""
    fig.suptitle(f"wsgi-wasm vs native WSGI servers: wrk -t1 -c64, server on 1 CPU{smoke}\n"
                 f"{results['date']}, {results['machine']} (indicative: shared 2-core machine)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
