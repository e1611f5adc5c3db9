"""The benchmark report: reads the JSON files of one run directory (latency.json, quality.json,
compliance.json, machine.json, and an optional hand-written notes.md; whichever exist), draws the
plots and writes report.md plus a self-contained report.html (plots embedded as base64 PNG).
Rebuild any time: `build(run_dir)` or `recsys bench report RUN_DIR`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from benchmarks import plots

GOAL_MARK = {True: "met", False: "**not met**", None: "not measured"}


class ReportError(ValueError):
    """The run directory holds no benchmark JSON, or a file that cannot be read; names the file."""


# ---------------------------------------------------------------------------------------------------
# A tiny document model, rendered twice (Markdown and HTML)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str  # may hold `code` and **bold**


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


Block = Heading | Para | Bullets | Table | Figure


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            cells = [[c.replace("|", "\\|") for c in row] for row in block.rows]
            out.append("\n".join(
                ["| " + " | ".join(block.headers) + " |", "|" + "|".join("---" for _ in block.headers) + "|"]
                + ["| " + " | ".join(row) + " |" for row in cells]
            ))
        elif isinstance(block, Figure):
            out.append(f"![{block.caption}]({block.path.name})\n\n*{block.caption}*")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{border-bottom:2px solid #4C78A8;padding-bottom:.2em}h2{margin-top:2em;color:#2b4c73}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.35em .7em;text-align:left}
th{background:#f3f6fa}tr:nth-child(even) td{background:#fafafa}figure{margin:1.2em 0}figure img{max-width:100%;
border:1px solid #eee}figcaption{color:#666;font-size:.9em}code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
"""


def to_html(blocks: list[Block], title: str) -> str:
    out = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.path.read_bytes()).decode()
            out.append(f"<figure><img alt=\"{html.escape(block.caption)}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption>{_inline(block.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------------
def _ms(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _items(n: int) -> str:
    return f"{n:,}"


def _pm(stats: dict, digits: int = 4) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _measured(goal: dict) -> str:
    value = goal["measured"]
    if value is None:
        return "–"
    unit = goal.get("unit") or ""
    return f"{value:.3g} {unit}".strip() if isinstance(value, float) else f"{value} {unit}".strip()


# ---------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------
def machine_section(machine: dict) -> list[Block]:
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v)
    return [
        Heading(2, "Machine"),
        Table(["", "this run"], [
            ["CPU", f"{machine.get('cpu_model')} ({machine.get('cores')} cores, {machine.get('cores_usable')} usable)"],
            ["memory", f"{machine.get('memory_gb')} GB"],
            ["OS / Python", f"{machine.get('os')} / Python {machine.get('python')}"],
            ["libraries", versions],
            ["recorded", str(machine.get("recorded_at"))],
        ]),
    ]


def goals_section(latency: dict) -> list[Block]:
    rows = [[g["goal"], g["target"], _measured(g), GOAL_MARK[g["met"]], g["at"]] for g in latency.get("goals", [])]
    return [Heading(2, "Goals (reported, not asserted)"), Table(["goal", "target", "measured", "verdict", "at"], rows)]


def latency_section(latency: dict, out: Path) -> list[Block]:
    config = latency["config"]
    sizes = latency["sizes"]
    blocks: list[Block] = [
        Heading(2, "Latency"),
        Para(f"Synthetic catalogs of {', '.join(_items(s['n_items']) for s in sizes)} items "
             f"(`recsys.datasets.synthetic`, seed {config['seed']}), each with a model trained by the real pipeline "
             f"with cheap settings (`{json.dumps(config['training'])}`), cached under `benchmarks/results/cache/`. "
             f"In process: {config['inprocess_requests']} timed requests (home, page 0, k 10, adult known users) "
             "through the route's path (pipeline ► log append ► record) on **one core** (BLAS, Faiss, torch at one "
             f"thread). HTTP: a real `recsys serve` with {config['workers']} workers on 127.0.0.1, "
             f"{config['requests']} timed requests per concurrency level over keep-alive connections"
             + (f", for catalogs up to {_items(config['http_max_items'])} items (`--http-max-items`)."
                if config.get("http_max_items") else ".")),
    ]
    rows = []
    for s in sizes:
        ip = s["in_process"]["total_ms"]
        levels = {lv["concurrency"]: lv for lv in (s.get("http") or {}).get("levels", [])}
        cells = []
        for c in config["concurrency"]:
            lv = levels.get(c)
            cells.append(f"{lv['throughput_rps']:.0f} req/s, p99 {_ms(lv['latency_ms']['p99'])}" if lv else "–")
        peak = (s.get("http") or {}).get("server_peak_rss_mb", {})
        rows.append([_items(s["n_items"]), _items(s["n_users"]), f"{_ms(ip['p50'])} / {_ms(ip['p99'])} / {_ms(ip['p99_9'])}",
                     *cells, f"{peak.get('total_mb', 0):,.0f} MB ({peak.get('processes', 0)} proc.)" if peak else "–",
                     f"{s['model']['train_seconds']:.0f} s"])
    blocks.append(Table(["items", "users", "in process p50 / p99 / p99.9 ms",
                         *[f"HTTP c={c}" for c in config["concurrency"]], "server peak RSS", "training"], rows))
    figure = plots.latency_cdf(latency, out / "latency_cdf.png")
    if figure:
        blocks.append(Figure(figure, "HTTP latency CDF per concurrency level, one panel per catalog size."))
    for s in sizes:
        http = s.get("http")
        if not http:
            continue
        rows = [[str(lv["concurrency"]), f"{lv['ok']}/{lv['requests_planned']}", f"{lv['throughput_rps']:.0f}",
                 _ms(lv["latency_ms"]["p50"]), _ms(lv["latency_ms"]["p95"]), _ms(lv["latency_ms"]["p99"]),
                 _ms(lv["latency_ms"]["p99_9"]), ", ".join(f"{k}: {v}" for k, v in lv["statuses"].items())
                 + (" (stopped by the time limit)" if lv.get("stopped_by_time_limit") else "")]
                for lv in http["levels"]]
        floor = http.get("readyz_ms") or {}
        blocks += [Para(f"**HTTP, {_items(s['n_items'])} items** ({http['workers']} workers, server ready in "
                        f"{http['startup_seconds']} s, peak RSS {http['server_peak_rss_mb']['total_mb']:,.0f} MB over "
                        f"{http['server_peak_rss_mb']['processes']} processes; transport floor: `GET /readyz` "
                        f"p50 {_ms(floor.get('p50'))} ms at concurrency 1"
                        + (f"; **{http['failed_starts']} start(s) exited during startup and were retried**"
                           if http.get("failed_starts") else "") + "):"),
                   Table(["concurrency", "ok", "req/s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "statuses"], rows)]
        stages = [st for st in plots.STAGE_COLORS if any(st in lv.get("server_stage_mean_ms", {}) for lv in http["levels"])]
        if stages:
            blocks += [Para("Mean ms per stage measured inside the server (its `/metrics`) during each load level: "
                            "what grows with concurrency is contention, not work."),
                       Table(["concurrency", *stages],
                             [[str(lv["concurrency"]), *[_ms(lv.get("server_stage_mean_ms", {}).get(st)) for st in stages]]
                              for lv in http["levels"]])]
    figure = plots.stage_breakdown(latency, out / "stage_breakdown.png")
    if figure:
        blocks.append(Figure(figure, "Per-stage time of the request path in process (one core): mean stacked, p99 per stage."))
    stages = list(sizes[-1]["in_process"]["stages_ms"])
    rows = [[stage, *[f"{_ms(s['in_process']['stages_ms'][stage]['p50'])} / {_ms(s['in_process']['stages_ms'][stage]['p99'])}"
                      for s in sizes]] for stage in stages]
    rows.append(["**total (route path)**", *[f"{_ms(s['in_process']['total_ms']['p50'])} / {_ms(s['in_process']['total_ms']['p99'])}"
                                             for s in sizes]])
    blocks.append(Table(["stage (p50 / p99 ms)", *[f"{_items(s['n_items'])} items" for s in sizes]], rows))
    figure = plots.latency_vs_size(latency, out / "latency_vs_size.png")
    if figure:
        blocks.append(Figure(figure, "Latency and throughput as the catalog grows."))

    blocks.append(Heading(3, "Compliance overhead (list policies on vs off)"))
    method = sizes[0]["in_process"]["policy_on_off"]["method"]
    blocks.append(Para(f"Method: {method}."))
    rows = []
    for s in sizes:
        p = s["in_process"]["policy_on_off"]
        rows.append([_items(s["n_items"]), f"{_ms(p['on_ms']['mean'])} / {_ms(p['on_ms']['p99'])}",
                     f"{_ms(p['off_ms']['mean'])} / {_ms(p['off_ms']['p99'])}",
                     f"{_ms(p['policy_stage_on_ms']['mean'])} vs {_ms(p['policy_stage_off_ms']['mean'])}",
                     f"{100 * p['overhead_mean']:+.1f} %", f"{100 * p['overhead_p99']:+.1f} %"])
    blocks.append(Table(["items", "on: mean / p99 ms", "off: mean / p99 ms", "policy stage on vs off (mean ms)",
                         "overhead (mean)", "overhead (p99)"], rows))
    figure = plots.policy_overhead(latency, out / "policy_overhead.png")
    if figure:
        blocks.append(Figure(figure, "The same requests through the pipeline with the list policies on and off."))

    blocks.append(Heading(3, "Faiss index choice"))
    rows = []
    for s in sizes:
        for e in s["indexes"]:
            if "skipped" in e:
                rows.append([_items(s["n_items"]), e["kind"], "–", "–", "–", e["skipped"]])
                continue
            params = e.get("params", {})
            detail = ", ".join(f"{k} {params[k]}" for k in ("nlist", "nprobe", "hnsw_m", "ef_search") if k in params)
            rows.append([_items(s["n_items"]), e["kind"] + (" (served)" if e.get("served") else ""), f"{e['recall_at_k']:.3f}",
                         f"{_ms(e['search_ms']['p50'])} / {_ms(e['search_ms']['p99'])}",
                         "training" if e.get("served") and e.get("build_seconds") is None else
                         (f"{e['build_seconds']:.1f} s" if e.get("build_seconds") is not None else "–"), detail])
    k = next((e["k"] for s in sizes for e in s["indexes"]), "K")
    blocks.append(Table(["items", "index", f"recall@{k} vs exact", "search p50 / p99 ms (1 core)", "build", "params"], rows))
    figure = plots.index_tradeoff(latency, out / "index_tradeoff.png")
    if figure:
        blocks.append(Figure(figure, "Recall against exact search vs search time per query, per index kind."))
    return blocks


def _ratio(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cores(real: dict) -> str:
    return str(next((lv["cpu"]["machine_cores"] for lv in real["levels"] if lv.get("cpu")), "?"))


def _cpu_cells(level: dict) -> list[str]:
    cpu = level.get("cpu")
    if not cpu:
        return ["–", "–"]
    split = cpu.get("worker_cpu_ms_per_response")
    per = _ms(cpu["server_cpu_ms_per_response"])
    if split:
        per += f" ({_ms(split['event_loop_thread'])} loop + {_ms(split['other_threads'])} threads)"
    return [per,
            f"{cpu['server_cores']:.2f} / {cpu['wrk_cores']:.2f} / {cpu['other_processes_cores']:.2f}"]


def real_path_section(latency: dict, out: Path) -> list[Block]:
    """The served model's real users over HTTP (wrk) against the bare-app floor, side by side."""
    real = latency["real_path"]
    model, server, load = real["model"], real["server"], real["load"]
    req = load["request"]
    blocks: list[Block] = [
        Heading(2, "Real path: the served model over HTTP, against the floor"),
        Para(f"Model `{model['uri']}` (version {model['version']}, dataset {model.get('dataset') or 'unknown'}, "
             f"{_items(model['n_items'])} items, {model.get('index', {}).get('kind', '?')} index) served by "
             f"`{server['command']}` on 127.0.0.1, state {server['state']} ({server['database']}); ready in "
             f"{server['startup_seconds']} s"
             + (f", **{server['failed_starts']} start(s) exited during startup and were retried**" if server.get("failed_starts") else "")
             + f". Load: {load['tool']}, {load['threads']} thread, {load['duration_s']:g} s per run after "
             f"{load['warmup_s']:g} s untimed per server, `{req['method']} {req['path']}` for all {_items(req['users'])} "
             f"users with a history ({model.get('minors', 0)} minors), round-robin, surface `{req['surface']}`, page 0, "
             f"k={req['k']}. The floor: {real['floor']['app']} ({real['floor']['body_bytes']:,} bytes), "
             f"{real['floor']['server']}, driven by the same wrk settings, interleaved with the real path level by level."),
    ]
    rows = []
    for lv in real["levels"]:
        rows.append([f"**real path** ({server['workers']} workers)", str(lv["concurrency"]), f"{lv['lists_per_s']:.0f}",
                     _ms(lv["latency_ms"]["p50"]), _ms(lv["latency_ms"]["p90"]), _ms(lv["latency_ms"]["p99"]),
                     _ms(lv["latency_ms"]["p99_9"]), str(lv["non_2xx"]), str(sum(lv["socket_errors"].values())), *_cpu_cells(lv)])
    for floor in real["floor"]["servers"]:
        for lv in floor["levels"]:
            rows.append([f"floor ({floor['workers']} worker{'s' if floor['workers'] > 1 else ''})", str(lv["concurrency"]),
                         f"{lv['requests_per_s']:.0f}", _ms(lv["latency_ms"]["p50"]), _ms(lv["latency_ms"]["p90"]),
                         _ms(lv["latency_ms"]["p99"]), _ms(lv["latency_ms"]["p99_9"]), str(lv["non_2xx"]),
                         str(sum(lv["socket_errors"].values())), *_cpu_cells(lv)])
    blocks.append(Table(["target", "concurrency", "lists/s (2xx)", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "non-2xx",
                         "socket errors", "server CPU ms / response", "cores: server / wrk / others"], rows))
    blocks.append(Para("CPU over each run, from /proc: the server's process tree (CPU ms per response: its work per list, "
                       "whatever the concurrency; in brackets the workers' event-loop thread, which parses HTTP, runs the "
                       "middleware, validates and serializes, and their other threads: the route's compute threads and the "
                       "log's fsync thread), wrk, and every other process on the machine (a shared machine's noise: "
                       f"compare ratios measured in one run). Machine: {_cores(real)} cores."))
    if real.get("ratios"):
        blocks += [Para("Real path / floor at the same concurrency (throughput: the share of the floor's rate the real "
                        "path reaches; latency: how many times the floor's):"),
                   Table(["concurrency", "floor workers", "throughput real/floor", "p50 real/floor", "p99 real/floor"],
                         [[str(r["concurrency"]), str(r["floor_workers"]), _ratio(r["throughput"], 3), _ratio(r["p50"]),
                           _ratio(r["p99"])] for r in real["ratios"]])]
    stages = [st for st in plots.REAL_STAGE_COLORS if any(st in lv.get("server_stages", {}) for lv in real["levels"])]
    stages += sorted({st for lv in real["levels"] for st in lv.get("server_stages", {})} - set(stages))
    if stages:
        rows = []
        for st in stages:
            cells = []
            for lv in real["levels"]:
                v = lv.get("server_stages", {}).get(st)
                share = v["mean_ms"] / lv["server_stage_sum_mean_ms"] if v and lv.get("server_stage_sum_mean_ms") else None
                cells.append("–" if not v else f"{_ms(v['mean_ms'])} / {_ms(v['p99_ms'])} ({100 * share:.0f} %)")
            rows.append([st, *cells])
        rows.append(["**sum of stage means**", *[f"{_ms(lv.get('server_stage_sum_mean_ms'))} (wrk p50 {_ms(lv['latency_ms']['p50'])})"
                                                  for lv in real["levels"]]])
        rows.append(["lists counted by the server", *[f"{lv.get('server_lists', 0):,} (wrk 2xx {lv['ok']:,})" for lv in real["levels"]]])
        blocks += [Para("Inside the server (`recsys_stage_seconds` from `/metrics` read before and after each run, every "
                        "worker): mean from the _sum/_count deltas, p99 from the bucket deltas, interpolated inside its "
                        "bucket (bounds 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25 ms...: a coarse tail)."),
                   Table(["stage (mean / p99 ms, share)", *[f"c={lv['concurrency']}" for lv in real["levels"]]], rows)]
    figure = plots.real_path(latency, out / "real_path.png")
    if figure:
        blocks.append(Figure(figure, "The real path against the floor: latency CDFs (wrk) and the server's stage means."))
    profile = real.get("profile")
    if profile and profile.get("busy_samples"):
        def cell(entries: list[dict], i: int, key: str) -> list[str]:
            return [f"`{entries[i][key]}`", f"{100 * entries[i]['share']:.1f} %"] if i < len(entries) else ["", ""]

        n = max(len(profile["inclusive"]), len(profile["self"]), len(profile["innermost_project_line"]))
        blocks += [Para(f"py-spy on every worker for {profile['seconds']} s at {profile['rate_hz']} Hz under wrk "
                        f"c={profile['concurrency']} (an untimed run: {profile['lists_per_s_while_sampled']:.0f} lists/s while "
                        f"sampled); {profile['busy_samples']:,} busy samples of {profile['samples']:,} (waiting threads left "
                        f"out); raw stacks: {', '.join(profile['files'])}. By thread: "
                        + ", ".join(f"{t['thread']} {100 * t['share']:.0f} %" for t in profile.get("threads", []))
                        + ". Shares of busy samples: a project function on the stack; a function (any code) as the "
                        "innermost frame; a project line as the innermost project frame."),
                   Table(["project function (inclusive)", "share", "innermost frame (self)", "share",
                          "innermost project line", "share"],
                         [[*cell(profile["inclusive"], i, "frame"), *cell(profile["self"], i, "frame"),
                           *cell(profile["innermost_project_line"], i, "line")] for i in range(min(n, 20))])]
    return blocks


def quality_section(quality: dict, out: Path) -> list[Block]:
    from benchmarks.quality import tables as quality_tables

    k = quality["config"]["k"]
    price = quality["summary"]["price_of_compliance"]
    seeds = quality["config"]["seeds"]
    surfaces = quality["config"].get("surfaces") or [quality["config"]["surface"]]
    blocks: list[Block] = [
        Heading(2, "Quality"),
        Para(f"Dataset {quality['dataset']['name']} ({quality['dataset']['interactions']:,} interactions, "
             f"{quality['dataset']['items']:,} items, {quality['dataset']['users']:,} users); protocol: "
             f"{quality['protocol']}. Seeds {', '.join(map(str, seeds))}: mean ± standard deviation. The policy "
             "pipeline is the serving engine (`recsys.pipeline.rerank.select`) with the rules of page 0 of the "
             f"{' and '.join(surfaces)} surface(s) (`build_rules(PolicyConfig(), ...)`): item and content "
             "de-duplication, dispersal and (home) the front-screen mainstream slots, over the retrieval candidates "
             "plus the extra sources, all scored by the ranker. Violation columns count what each raw list would "
             "break (dispersal: more than 2 of a primary category in any 5 positions; duplicates by content key)."),
    ]
    for title, headers, rows in quality_tables(quality):
        if rows:
            blocks += [Heading(3, title), Table(headers, rows)]
    blocks.append(Para(f"**Price of compliance** ({price.get('surface', surfaces[0])}): NDCG@{k} "
                       f"{price['ndcg_delta']['mean']:+.4f} ± {price['ndcg_delta']['std']:.4f} "
                       f"({100 * price['ndcg_relative']['mean']:+.1f} % relative)"
                       + (f", unseen NDCG@{k} {price['unseen_ndcg_delta']['mean']:+.4f} "
                          f"({100 * price['unseen_ndcg_relative']['mean']:+.1f} %)" if "unseen_ndcg_delta" in price else "")
                       + f" — {price['explanation']}."))
    for name, builder, caption in (("quality_accuracy.png", plots.quality_accuracy, f"NDCG@{k} and Recall@{k} per model."),
                                   ("quality_beyond.png", plots.quality_beyond, "Coverage, genre diversity and dispersal violations.")):
        figure = builder(quality, out / name)
        if figure:
            blocks.append(Figure(figure, caption))
    if quality.get("mlflow_run_id"):
        blocks.append(Para(f"Logged to MLflow: experiment `benchmarks`, run `{quality['mlflow_run_id']}`."))
    return blocks


def compliance_section(compliance: dict, out: Path) -> list[Block]:
    audit = compliance["audit"]
    totals = audit["totals"]
    server = audit.get("server", {})
    blocks: list[Block] = [
        Heading(2, "Compliance audit"),
        Para(f"Black-box audit (`auditor.run_audit`) of {audit['base_url']} "
             f"({'started for this run' if compliance['server'].get('started_here') else 'given by --url'}): "
             f"model version {server.get('model_version')}, policy {server.get('policy_hash')}, filing number "
             f"{server.get('filing_number')}; {totals['requests']} requests, {totals['lists_served']} lists, "
             f"{totals['items_served']} items; users {', '.join(audit.get('users', [])) or 'none'}. "
             f"Verdict: **{'PASSED' if compliance['passed'] else 'FAILED'}** "
             f"({totals['checks_passed']} of {totals['checks']} checks)."),
    ]
    rows = []
    for check in audit["checks"]:
        counts = ", ".join(f"{k} {v}" for k, v in check["counts"].items() if k != "failures")
        rows.append([check["article"], check["name"], "pass" if check["passed"] else f"**FAIL** ({check['counts'].get('failures', 0)})",
                     counts])
    blocks.append(Table(["article", "check", "result", "counts"], rows))
    failed = [c for c in audit["checks"] if not c["passed"]]
    if failed:
        blocks.append(Bullets([f"{c['article']} {c['name']}: {d}" for c in failed for d in (c["details"][:3] or ["could not run"])]))
    notes = audit.get("notes", []) + [n for c in audit["checks"] for n in c.get("notes", [])]
    if notes:
        blocks.append(Bullets([f"note: {n}" for n in dict.fromkeys(notes)]))
    figure = plots.audit_overview(compliance, out / "audit_overview.png")
    if figure:
        blocks.append(Figure(figure, "Audit checks by article."))
    return blocks


# ---------------------------------------------------------------------------------------------------
def _read(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read benchmark JSON ({exc})") from None


def build(run_dir: Path, title: str | None = None) -> tuple[Path, Path]:
    """Write run_dir/report.md and run_dir/report.html (plots beside them); return both paths."""
    run_dir = Path(run_dir)
    latency, quality, compliance = (_read(run_dir / f"{name}.json") for name in ("latency", "quality", "compliance"))
    machine = _read(run_dir / "machine.json") or next((d["machine"] for d in (latency, quality, compliance)
                                                       if d and d.get("machine")), None)
    if not any((latency, quality, compliance)):
        raise ReportError(f"{run_dir}: no latency.json, quality.json or compliance.json to report on")
    title = title or f"Benchmark report: {run_dir.name}"
    blocks: list[Block] = [Heading(1, title)]
    ran = [name for name, data in (("latency", latency), ("quality", quality), ("compliance", compliance)) if data]
    blocks.append(Para(f"Benchmarks in this run: {', '.join(ran)}. Rerun with `recsys bench all` (or `make bench`); "
                       "the JSON files next to this report hold every number."))
    if latency and latency.get("sizes"):
        blocks += goals_section(latency)
    if machine:
        blocks += machine_section(machine)
    if latency and latency.get("sizes"):
        blocks += latency_section(latency, run_dir)
    if latency and latency.get("real_path"):
        blocks += real_path_section(latency, run_dir)
    if quality:
        blocks += quality_section(quality, run_dir)
    if compliance:
        blocks += compliance_section(compliance, run_dir)
    notes = run_dir / "notes.md"
    if notes.exists():  # hand-written remarks on this run, one "- " bullet per line
        lines = [line.removeprefix("- ").strip() for line in notes.read_text(encoding="utf-8").splitlines()]
        blocks += [Heading(2, "Notes on this run"), Bullets([line for line in lines if line])]
    md, page = run_dir / "report.md", run_dir / "report.html"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, title), encoding="utf-8")
    return md, page
