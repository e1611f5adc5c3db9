"""The report's figures, drawn from the benchmark JSON alone (so a report can be rebuilt from it).

Each function takes the parsed JSON and an output path, writes one PNG and returns its path (or
None when the JSON has nothing to draw). Titles say what to look at; goals are dashed lines.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110
STAGE_COLORS = {
    "hydrate": "#4C78A8", "sources": "#72B7B2", "filters": "#54A24B", "ranker": "#EECA3B",
    "policy": "#F58518", "explain": "#B279A2", "log": "#9D755D",
}
LEVEL_COLORS = ["#4C78A8", "#F58518", "#E45756", "#54A24B", "#B279A2"]
SIZE_COLORS = ["#4C78A8", "#F58518", "#E45756", "#54A24B"]
GOAL_STYLE = {"color": "#555555", "linestyle": "--", "linewidth": 1}
POLICY_COLOR, OFF_COLOR = "#F58518", "#BAB0AC"


def _style() -> None:
    plt.rcParams.update({
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "font.size": 9.5, "axes.titlesize": 11, "axes.titleweight": "bold", "legend.frameon": False,
    })


def _items(n: int) -> str:
    return f"{n / 1e6:g}M items" if n >= 1_000_000 else f"{n / 1e3:g}k items" if n >= 1000 else f"{n} items"


def _log_ms_axis(axis) -> None:
    """Log-scaled ms with plain labels (1, 2, 5, 10, 20, ...) instead of 3x10^1."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis.set_major_locator(FixedLocator([round(v * 10.0**e, 3) for e in range(-2, 5) for v in (1, 2, 5)]))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------------
def latency_cdf(latency: dict, path: Path) -> Path | None:
    """Per catalog size, the CDF of HTTP latency at each concurrency level (log-scaled ms)."""
    sizes = [s for s in latency["sizes"] if s.get("http")]
    if not sizes:
        return None
    _style()
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes) + 0.6, 3.9), squeeze=False, sharey=True)
    for ax, size in zip(axes[0], sizes):
        for color, level in zip(LEVEL_COLORS, size["http"]["levels"]):
            cdf = np.asarray(level["cdf_ms"])
            if not len(cdf):
                continue
            fractions = np.linspace(0, 1, len(cdf))
            ax.plot(cdf, fractions, color=color, linewidth=2,
                    label=f"concurrency {level['concurrency']}: {level['throughput_rps']:.0f} req/s")
            p99 = level["latency_ms"]["p99"]
            ax.plot([p99], [0.99], "o", color=color, markersize=5)
        ax.axvline(25, **GOAL_STYLE)
        ax.text(25, 0.03, " p99 goal 25 ms", color="#555555", fontsize=8)
        ax.axhline(0.99, color="#999999", linewidth=0.6)
        ax.set_xscale("log")
        _log_ms_axis(ax.xaxis)
        ax.set_xlabel("latency per request (ms, log scale)")
        ax.set_title(f"{_items(size['n_items'])}, {size['http']['workers']} workers")
        ax.legend(loc="lower right", fontsize=8)
    axes[0][0].set_ylabel("share of requests answered within")
    fig.suptitle("HTTP latency distribution per concurrency (dots: p99)", fontweight="bold")
    return _save(fig, path)


def stage_breakdown(latency: dict, path: Path) -> Path | None:
    """Where the time of one request goes: mean ms per stage, stacked, one bar per catalog size."""
    sizes = latency["sizes"]
    if not sizes:
        return None
    _style()
    stages = list(STAGE_COLORS)
    fig, (ax, ax99) = plt.subplots(1, 2, figsize=(11, max(3.8, 0.9 * len(sizes) + 2.4)), gridspec_kw={"width_ratios": [3, 2]})
    labels = [_items(s["n_items"]) for s in sizes]
    y = np.arange(len(sizes))
    left = np.zeros(len(sizes))
    totals = np.asarray([sum(s["in_process"]["stages_ms"][stage]["mean"] for stage in stages) for s in sizes])
    for stage in stages:
        means = np.asarray([s["in_process"]["stages_ms"][stage]["mean"] for s in sizes])
        ax.barh(y, means, left=left, color=STAGE_COLORS[stage], label=stage, height=0.6)
        for i, (start, width) in enumerate(zip(left, means)):
            if width > 0.06 * totals.max():  # label only the segments wide enough to hold it
                ax.text(start + width / 2, i, f"{width:.2f}", ha="center", va="center", fontsize=8, color="white")
        left += means
    for i, size in enumerate(sizes):
        total = size["in_process"]["total_ms"]
        ax.text(left[i], i, f"  p50 {total['p50']:.2f} / p99 {total['p99']:.2f} ms", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, left.max() * 1.55)
    ax.set_xlabel("mean ms per request, one core (stacked by stage)")
    ax.set_title("Where a request's time goes (in process)")
    ax.legend(ncol=4, fontsize=8, loc="upper right")
    width = 0.8 / len(sizes)
    x = np.arange(len(stages))
    for j, size in enumerate(sizes):
        p99 = [size["in_process"]["stages_ms"][s]["p99"] for s in stages]
        ax99.bar(x + (j - (len(sizes) - 1) / 2) * width, p99, width, color=SIZE_COLORS[j % len(SIZE_COLORS)],
                 label=labels[j])
    ax99.set_xticks(x, stages, rotation=30)
    ax99.set_ylabel("p99 ms")
    ax99.set_title("Tail per stage (p99)")
    ax99.legend(fontsize=8)
    return _save(fig, path)


def latency_vs_size(latency: dict, path: Path) -> Path | None:
    """p50/p99 in process and over HTTP, and throughput, as the catalog grows."""
    sizes = sorted(latency["sizes"], key=lambda s: s["n_items"])
    if not sizes:
        return None
    _style()
    n = [s["n_items"] for s in sizes]
    fig, (ax, axt) = plt.subplots(1, 2, figsize=(11, 4.6))
    ax.plot(n, [s["in_process"]["total_ms"]["p50"] for s in sizes], "o-", color="#4C78A8", label="in process p50 (1 core)")
    ax.plot(n, [s["in_process"]["total_ms"]["p99"] for s in sizes], "o--", color="#4C78A8", label="in process p99 (1 core)")
    levels = sorted({lv["concurrency"] for s in sizes if s.get("http") for lv in s["http"]["levels"]})
    focus = 8 if 8 in levels else (levels[0] if levels else None)
    if focus is not None:
        http = [next((lv for lv in (s.get("http") or {}).get("levels", []) if lv["concurrency"] == focus), None) for s in sizes]
        xs = [x for x, lv in zip(n, http) if lv]
        ax.plot(xs, [lv["latency_ms"]["p50"] for lv in http if lv], "s-", color="#E45756", label=f"HTTP p50 (concurrency {focus})")
        ax.plot(xs, [lv["latency_ms"]["p99"] for lv in http if lv], "s--", color="#E45756", label=f"HTTP p99 (concurrency {focus})")
    ax.axhline(5, **GOAL_STYLE)
    ax.text(n[0] / 1.9, 5, "in-process p99 goal 5 ms", va="bottom", fontsize=8, color="#555555")
    ax.axhline(25, **GOAL_STYLE)
    ax.text(n[0] / 1.9, 25, "HTTP p99 goal 25 ms", va="bottom", fontsize=8, color="#555555")
    ax.set_xscale("log")
    ax.set_xlim(n[0] / 2, n[-1] * 2)
    ax.set_yscale("log")
    _log_ms_axis(ax.yaxis)
    ax.set_xlabel("catalog size (items)")
    ax.set_ylabel("ms per request (log)")
    ax.set_title("Latency vs catalog size")
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    for color, level in zip(LEVEL_COLORS, levels):
        points = [(s["n_items"], lv["throughput_rps"]) for s in sizes if s.get("http")
                  for lv in s["http"]["levels"] if lv["concurrency"] == level]
        if points:
            axt.plot(*zip(*points), "o-", color=color, label=f"concurrency {level}")
    axt.axhline(300, **GOAL_STYLE)
    axt.text(n[0] / 1.9, 300, "goal 300 req/s at concurrency 8", va="bottom", fontsize=8, color="#555555")
    axt.set_xscale("log")
    axt.set_xlim(n[0] / 2, n[-1] * 2)
    axt.set_xlabel("catalog size (items)")
    axt.set_ylabel("requests per second")
    axt.set_title("HTTP throughput (2 workers)")
    axt.set_ylim(0, max([300] + [p for s in sizes if s.get("http") for p in [lv["throughput_rps"] for lv in s["http"]["levels"]]]) * 1.2)
    if axt.get_legend_handles_labels()[0]:
        axt.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    else:
        axt.text(0.5, 0.5, "not measured over HTTP", transform=axt.transAxes, ha="center", color="#777777")
    return _save(fig, path)


def index_tradeoff(latency: dict, path: Path) -> Path | None:
    """Recall@K against exact search vs single-query search time, per index kind and catalog size."""
    points = [(s["n_items"], e) for s in latency["sizes"] for e in s["indexes"] if "recall_at_k" in e]
    if not points:
        return None
    _style()
    markers = {"flat": "s", "hnsw": "^", "ivf": "o"}
    sizes = sorted({n for n, _ in points})
    fig, ax = plt.subplots(figsize=(7.5, 4.3))
    for n, entry in points:
        color = SIZE_COLORS[sizes.index(n) % len(SIZE_COLORS)]
        x, y = entry["search_ms"]["p50"], entry["recall_at_k"]
        ax.scatter([x], [y], marker=markers[entry["kind"]], s=90 if entry.get("served") else 50, color=color,
                   edgecolor="black" if entry.get("served") else "none", zorder=3)
        ax.annotate(f"{entry['kind']}{' (served)' if entry.get('served') else ''}", (x, y), textcoords="offset points",
                    xytext=(6, -3), fontsize=8)
    for i, n in enumerate(sizes):
        ax.scatter([], [], color=SIZE_COLORS[i % len(SIZE_COLORS)], label=_items(n))
    ax.axhline(0.95, **GOAL_STYLE)
    ax.set_xscale("log")
    _log_ms_axis(ax.xaxis)
    ax.set_xlim(min(e["search_ms"]["p50"] for _, e in points) / 1.6, max(e["search_ms"]["p50"] for _, e in points) * 2.5)
    ax.text(ax.get_xlim()[1] / 1.05, 0.95, "recall goal 0.95", ha="right", va="top", fontsize=8, color="#555555")
    ax.set_ylim(max(0.0, min(e["recall_at_k"] for _, e in points) - 0.08), 1.03)
    ax.set_xlabel("search time per query, p50 (ms, one core, log)")
    k = points[0][1]["k"]
    ax.set_ylabel(f"recall@{k} vs exact search")
    ax.set_title("Faiss index choice: recall vs speed (outlined: the served index)")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def policy_overhead(latency: dict, path: Path) -> Path | None:
    """The pipeline with the list policies on vs off (same requests, interleaved), per size."""
    sizes = latency["sizes"]
    if not sizes:
        return None
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(sizes))
    width = 0.2
    for offset, key, color, label in ((-1.5, "off_ms", OFF_COLOR, "off, mean"), (-0.5, "on_ms", POLICY_COLOR, "on, mean"),
                                      (0.5, "off_ms", OFF_COLOR, "off, p99"), (1.5, "on_ms", POLICY_COLOR, "on, p99")):
        stat = "mean" if "mean" in label else "p99"
        values = [s["in_process"]["policy_on_off"][key][stat] for s in sizes]
        bars = ax.bar(x + offset * width, values, width, color=color, label=label,
                      hatch="//" if stat == "p99" else None, edgecolor="white")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    top = max(max(s["in_process"]["policy_on_off"][key][stat] for key in ("on_ms", "off_ms") for stat in ("mean", "p99"))
              for s in sizes)
    ax.set_ylim(0, top * 1.3)
    for i, size in enumerate(sizes):
        overhead = size["in_process"]["policy_on_off"]["overhead_mean"]
        ax.text(i, top * 1.16, f"{100 * overhead:+.1f}% (mean)", ha="center", fontsize=9, fontweight="bold")
    ax.set_xticks(x, [_items(s["n_items"]) for s in sizes])
    ax.set_ylabel("ms per pipeline run, one core")
    ax.set_title("Compliance overhead: list policies on vs off (goal < 10 %)")
    ax.legend(fontsize=8, ncol=4, loc="lower center", bbox_to_anchor=(0.5, -0.32))
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------------------
def _model_colors(models: list[str]) -> list[str]:
    return ["#F58518" if "policy" in m else "#4C78A8" if m == "two-stage" else "#9DB6D1" for m in models]


def quality_accuracy(quality: dict, path: Path) -> Path | None:
    """NDCG@k and Recall@k per model, mean over seeds with the spread as error bars."""
    models = quality["summary"]["models"]
    k = quality["config"]["k"]
    names = list(models)
    _style()
    fig, axes = plt.subplots(1, 2, figsize=(max(11, 1.1 * len(names) + 2), 4))
    # The served reality (every seen item excluded) when the run has it, next to the published protocol.
    first = (f"unseen_ndcg_at_{k}", f"NDCG@{k}, seen items excluded") if f"unseen_ndcg_at_{k}" in models[names[0]] \
        else (f"recall_at_{k}", f"Recall@{k}")
    for ax, metric, title in ((axes[0], *first), (axes[1], f"ndcg_at_{k}", f"NDCG@{k}, train positives excluded")):
        means = [models[m][metric]["mean"] for m in names]
        spread = [models[m][metric]["std"] for m in names]
        bars = ax.bar(range(len(names)), means, yerr=spread, capsize=4, color=_model_colors(names))
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_title(f"{title} (mean ± std over {len(quality['config']['seeds'])} seed(s))")
        ax.set_ylim(0, max(means) * 1.25 if max(means) > 0 else 1)
    price = quality["summary"]["price_of_compliance"]
    delta = price.get("unseen_ndcg_delta", price["ndcg_delta"])["mean"]
    fig.suptitle(f"Accuracy on {quality['dataset']['name']}: the policy pipeline "
                 f"({price.get('surface', quality['config'].get('surface', 'home'))}) changes NDCG@{k} by {delta:+.4f}",
                 fontweight="bold")
    return _save(fig, path)


def quality_beyond(quality: dict, path: Path) -> Path | None:
    """Beyond accuracy: catalog coverage, genres in the top k, dispersal violations per list."""
    models = quality["summary"]["models"]
    k = quality["config"]["k"]
    names = list(models)
    _style()
    prefix = "unseen_" if f"unseen_genres_at_{k}" in models[names[0]] else ""  # the served reality's lists when present
    panels = ((f"{prefix}catalog_coverage_at_{k}", f"catalog coverage@{k}"), (f"{prefix}genres_at_{k}", f"distinct genres in top {k}"),
              (f"{prefix}dispersal_violations_per_list", "dispersal violations per list"))
    fig, axes = plt.subplots(1, 3, figsize=(max(13, 1.2 * len(names) + 4), 3.9))
    for ax, (metric, title) in zip(axes, panels):
        means = [models[m][metric]["mean"] for m in names]
        spread = [models[m][metric]["std"] for m in names]
        bars = ax.bar(range(len(names)), means, yerr=spread, capsize=3, color=_model_colors(names))
        ax.bar_label(bars, fmt="%.2f", fontsize=7.5, padding=2)
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, (max(means) or 1) * 1.25)
    fig.suptitle("Beyond accuracy (orange: after the policy pipeline)", fontweight="bold")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# Compliance
# ---------------------------------------------------------------------------------------------------
def audit_overview(compliance: dict, path: Path) -> Path | None:
    """One row per audit check: green pass / red fail, labelled with the article."""
    checks = compliance["audit"]["checks"]
    if not checks:
        return None
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(checks) + 1.2))
    labels = [f"{c['article']} {c['name']}" for c in checks][::-1]
    colors = ["#54A24B" if c["passed"] else "#E45756" for c in checks][::-1]
    ax.barh(range(len(checks)), [1] * len(checks), color=colors, height=0.7)
    for i, check in enumerate(checks[::-1]):
        ax.text(0.5, i, "pass" if check["passed"] else f"FAIL ({check['counts'].get('failures', 0)})", ha="center",
                va="center", color="white", fontweight="bold", fontsize=8.5)
    ax.set_yticks(range(len(checks)), labels)
    ax.set_xticks([])
    ax.grid(False)
    ax.spines[["bottom", "left"]].set_visible(False)
    totals = compliance["audit"]["totals"]
    ax.set_title(f"Black-box audit: {totals['checks_passed']} of {totals['checks']} checks passed "
                 f"({totals['requests']} requests)")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# The real path against the floor
# ---------------------------------------------------------------------------------------------------
REAL_STAGE_COLORS = {"gate": "#BAB0AC", **STAGE_COLORS}


def real_path(latency: dict, path: Path) -> Path | None:
    """Left: latency CDFs of the real path and of the floor at each concurrency (log ms). Right:
    the server's mean ms per stage at each concurrency, stacked, with wrk's p50 beside it."""
    real = latency.get("real_path")
    if not real or not real.get("levels"):
        return None
    _style()
    fig, (ax, axs) = plt.subplots(1, 2, figsize=(11.5, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    floors = real.get("floor", {}).get("servers", [])
    floor = next((f for f in floors if f["workers"] == real["server"]["workers"]), floors[-1] if floors else None)
    for color, level in zip(LEVEL_COLORS, real["levels"]):
        c = level["concurrency"]
        cdf = np.asarray(level["cdf_ms"])
        if len(cdf):
            ax.plot(cdf, np.linspace(0, 1, len(cdf)), color=color, linewidth=2,
                    label=f"real path c={c}: {level['lists_per_s']:.0f} lists/s")
        twin = next((lv for lv in (floor or {}).get("levels", []) if lv["concurrency"] == c), None)
        if twin and twin["cdf_ms"]:
            cdf = np.asarray(twin["cdf_ms"])
            ax.plot(cdf, np.linspace(0, 1, len(cdf)), color=color, linewidth=1.3, linestyle=":",
                    label=f"floor ({floor['workers']} w) c={c}: {twin['requests_per_s']:.0f} req/s")
    ax.axhline(0.99, color="#999999", linewidth=0.6)
    ax.set_xscale("log")
    _log_ms_axis(ax.xaxis)
    ax.set_xlabel("latency, ms (log; wrk)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Real path vs floor (bare FastAPI, same body size)")
    ax.legend(fontsize=8, loc="lower right")
    stages = [s for s in REAL_STAGE_COLORS if any(s in lv.get("server_stages", {}) for lv in real["levels"])]
    x = np.arange(len(real["levels"]))
    bottom = np.zeros(len(x))
    for stage in stages:
        means = np.asarray([lv.get("server_stages", {}).get(stage, {}).get("mean_ms", 0.0) for lv in real["levels"]])
        axs.bar(x, means, 0.55, bottom=bottom, color=REAL_STAGE_COLORS[stage], label=stage)
        bottom += means
    for i, level in enumerate(real["levels"]):
        axs.text(i, bottom[i], f"stages {bottom[i]:.1f} ms\nwrk p50 {level['latency_ms']['p50']:.1f} ms",
                 ha="center", va="bottom", fontsize=8)
    axs.set_xticks(x, [f"c={lv['concurrency']}" for lv in real["levels"]])
    axs.set_ylim(0, max(bottom.max(), 1e-3) * 1.35)
    axs.set_ylabel("mean ms per list inside the server")
    axs.set_title("Server stages (/metrics)")
    axs.legend(fontsize=7.5, ncol=2, loc="upper left")
    return _save(fig, path)
