"""Charts of bench/run.sh's runs (PNG, matplotlib), for report.py.

Every chart is made from the same records as the tables (one JSON object per run),
with the same medians. A server has one colour in every chart; tether and
tether_uring are drawn in strong colours with a dark edge (bars) or a thick line,
every other server in a lighter one, so who leads is seen at a glance.

Generic helpers, for any section: grouped_bars() (categories on x, one bar per
server) and lines_by_x() (a numeric x such as N receivers, one line per server).
Each section's chart function takes the records, returns the file name it wrote,
or None when the section has no data (and then removes a stale file of that name,
so a chart never outlives its data)."""
import os
import statistics
import sys

# Fixed colours: tether's strong, the peers' muted (Tableau-like, lightened).
COLOURS = {
    "tether": "#d62728",        # red
    "tether_uring": "#ff7f0e",  # orange
    "epoll": "#7f7f7f",         # grey: the hand-written floors
    "uring": "#b0b0b0",
    "libuv": "#6baed6",         # blues, greens, purples
    "libevent": "#74c476",
    "libev": "#9e9ac8",
    "node": "#c49c94",
    "lws": "#80cdc1",
    "chat": "#8b0000",          # the CLI's chat: tether's reds, darker
    "chat_uring": "#a0522d",
}
SPARE = ["#bcbd22", "#e377c2", "#17becf", "#8c564b", "#aec7e8", "#98df8a"]

_plt = None


def _pyplot():
    """matplotlib.pyplot on the Agg backend; exits with a clear message if missing."""
    global _plt
    if _plt is None:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            sys.exit("report.py: the charts need matplotlib, missing for %s: install "
                     "python3-matplotlib (scripts/deps.sh) and run Debian's /usr/bin/python3, "
                     "or leave out --charts" % sys.executable)
        plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "font.size": 9,
                             "axes.spines.top": False, "axes.spines.right": False,
                             "axes.grid": True, "grid.alpha": 0.3})
        _plt = plt
    return _plt


def is_ours(server):
    return server.startswith("tether") or server.startswith("chat")


def colour(server, order=()):
    if server in COLOURS:
        return COLOURS[server]
    others = [s for s in order if s not in COLOURS]
    i = others.index(server) if server in others else sum(map(ord, server))
    return SPARE[i % len(SPARE)]


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def _save(fig, outdir, name):
    os.makedirs(outdir, exist_ok=True)
    fig.savefig(os.path.join(outdir, name), bbox_inches="tight",
                metadata={"Software": None})
    _pyplot().close(fig)
    return name


def _legend(ax, **kw):
    leg = ax.legend(frameon=False, **kw)
    for t in leg.get_texts():
        if is_ours(t.get_text()):
            t.set_fontweight("bold")
    return leg


def grouped_bars(outdir, name, title, groups, servers, value, ylabel, note=None,
                 ref=None, logy=False, fmt=None):
    """Categories on x (groups: list of (key, label)), one bar per server in each.
    value(key, server) -> number or None (no bar). ref: a y drawn as a dashed line
    (e.g. 1.0 for ratios). fmt(v): text over tether's bars. Returns the file name,
    or None (stale file removed) when there is no value at all."""
    path = os.path.join(outdir, name)
    vals = {(k, s): value(k, s) for k, _ in groups for s in servers}
    if not groups or all(v is None for v in vals.values()):
        _remove(path)
        return None
    plt = _pyplot()
    width = 0.8 / max(1, len(servers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(groups) * len(servers) + 2), 4.2))
    for i, s in enumerate(servers):
        xs = [g + (i - (len(servers) - 1) / 2) * width for g in range(len(groups))]
        ys = [vals[(k, s)] for k, _ in groups]
        ours = is_ours(s)
        bars = ax.bar([x for x, y in zip(xs, ys) if y is not None],
                      [y for y in ys if y is not None], width * 0.95, label=s,
                      color=colour(s, servers), edgecolor="black" if ours else "none",
                      linewidth=1.0 if ours else 0, zorder=3 if ours else 2)
        if fmt and ours:
            for b in bars:
                ax.annotate(fmt(b.get_height()), (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=6, rotation=90,
                            xytext=(0, 2), textcoords="offset points")
    if ref is not None:
        ax.axhline(ref, color="black", linewidth=0.8, linestyle="--", zorder=4)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([label for _, label in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10, loc="left")
    if note:
        fig.text(0.01, -0.02, note, fontsize=7, va="top", wrap=True)
    _legend(ax, ncol=min(len(servers), 7), loc="upper center", bbox_to_anchor=(0.5, -0.2),
            fontsize=8)
    return _save(fig, outdir, name)


def lines_by_x(outdir, name, title, xs, servers, value, xlabel, ylabel, logx=False,
               logy=False, note=None, panels=None):
    """A numeric (or ordered) x, one line per server. value(x, server[, panel]) ->
    number or None. panels: a list of (key, subtitle), one subplot each side by
    side sharing y (value then gets the panel key as a third argument). Returns the
    file name, or None (stale file removed) when there is no value at all."""
    path = os.path.join(outdir, name)
    keys = panels if panels is not None else [(None, "")]
    get = (lambda x, s, p: value(x, s, p)) if panels is not None else (
        lambda x, s, p: value(x, s))
    if not xs or not keys or all(get(x, s, p) is None for x in xs for s in servers for p, _ in keys):
        _remove(path)
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(max(6.0, 3.6 * len(keys)), 4.0),
                             sharey=True, squeeze=False)
    numeric = all(isinstance(x, (int, float)) for x in xs)
    for ax, (p, sub) in zip(axes[0], keys):
        for s in servers:
            pts = [(x, get(x, s, p)) for x in xs]
            pts = [(i if not numeric else x, y) for i, (x, y) in enumerate(pts) if y is not None]
            if not pts:
                continue
            ours = is_ours(s)
            ax.plot([x for x, _ in pts], [y for _, y in pts], label=s, color=colour(s, servers),
                    linewidth=2.6 if ours else 1.2, marker="o", markersize=4 if ours else 3,
                    zorder=3 if ours else 2)
        if not numeric:
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels([str(x) for x in xs])
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        if sub:
            ax.set_title(sub, fontsize=9)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    if note:
        fig.text(0.01, -0.03, note, fontsize=7, va="top", wrap=True)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # servers only drawn in a later panel
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    leg = fig.legend(handles, labels, frameon=False, ncol=min(len(labels), 7),
                     loc="lower center", bbox_to_anchor=(0.5, -0.1), fontsize=8)
    for t in leg.get_texts():
        if is_ours(t.get_text()):
            t.set_fontweight("bold")
    return _save(fig, outdir, name)


# ---- the sections' charts ------------------------------------------------------------


def _fmt_rate(v):
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    return "%.0fk" % (v / 1e3) if v >= 1e3 else "%.0f" % v


def throughput_chart(runs, servers, outdir):
    """Echo messages/s per configuration, ÷ epoll (the hand-written floor) when it
    was run, else absolute."""
    tp = {}
    for r in runs:
        if r["section"] != "throughput":
            continue
        res = r["result"]
        if res.get("failed") or not res.get("messages"):
            continue
        k = (res["connections"], res["size"], res["pipeline"])
        tp.setdefault(k, {}).setdefault(r["server"], []).append(res["msgs_per_s"])
    keys = sorted(tp)
    med = {(k, s): median(tp[k].get(s, [])) for k in keys for s in servers}
    base = "epoll" if "epoll" in servers and any(med[(k, "epoll")] for k in keys) else None

    def label(k):
        c, sz, p = k
        size = "%d KiB" % (sz // 1024) if sz >= 1024 else "%d B" % sz
        b = med.get((k, base)) if base else None
        return "%d conn%s\n%s, pipe %d%s" % (c, "" if c == 1 else "s", size, p,
                                             "\nepoll %s/s" % _fmt_rate(b) if b else "")

    if base:
        def value(k, s):
            v, b = med[(k, s)], med[(k, base)]
            return v / b if v is not None and b else None
        return grouped_bars(outdir, "throughput.png",
                            "Echo throughput by configuration: messages/s ÷ the epoll floor "
                            "(median of the rounds; higher is better)",
                            [(k, label(k)) for k in keys], servers, value, "÷ epoll", ref=1.0,
                            fmt=lambda v: "%.2f" % v)
    return grouped_bars(outdir, "throughput.png",
                        "Echo throughput by configuration: messages/s (median of the rounds)",
                        [(k, label(k)) for k in keys], servers, lambda k, s: med[(k, s)],
                        "messages/s", logy=True)


PCTS = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max")]


def rate_levels(runs):
    """{level: {server: [records]}} of the rate section."""
    out = {}
    for r in runs:
        if r["section"] == "rate" and r.get("level") is not None:
            out.setdefault(r["level"], {}).setdefault(r["server"], []).append(r)
    return out


def rate_chart(runs, servers, outdir):
    """Latency percentiles (from the schedule) at each fixed-rate level, one panel
    per level, log y."""
    lv = rate_levels(runs)
    levels = sorted(lv)

    def value(pct, s, level):
        rs = [r["result"] for r in lv.get(level, {}).get(s, [])]
        return median([res["latency_us"][pct] / 1e3 for res in rs
                       if res.get("messages") and not res.get("failed")])

    def sub(level):
        base = {r.get("base", "own") for s in lv[level] for r in lv[level][s]}
        return "%s %% of %s maximum" % (level, "its own" if base == {"own"} else "the slowest")

    return lines_by_x(outdir, "rate_latency.png",
                      "Latency at fixed rates, from the scheduled send time (open loop, "
                      "`tether bench --rate`; median of the rounds; lower is better)",
                      [p for p, _ in PCTS], servers, value, "percentile", "latency, ms",
                      logy=True, panels=[(l, sub(l)) for l in levels])


def idle_chart(runs, servers, outdir):
    """Server memory per idle connection, bytes, by N."""
    idle = [r for r in runs if r["section"] == "idle" and "skipped" not in r["result"]]
    counts = sorted({int(r["args"]) for r in idle})

    def value(n, s):
        rs = [r["result"] for r in idle if r["server"] == s and int(r["args"]) == n]
        if not rs or rs[0].get("established", 0) <= 0:
            return None
        res = rs[0]
        return (res["after_kb"] - res["before_kb"]) * 1024.0 / res["established"]

    return grouped_bars(outdir, "idle_memory.png",
                        "Server memory per idle connection, bytes (private memory growth ÷ N; "
                        "lower is better)", [(n, "N = %d" % n) for n in counts], servers, value,
                        "bytes per connection", fmt=lambda v: "%.0f" % v)


def fanout_chart(runs, servers, outdir, section="fanout", name="fanout.png"):
    """Deliveries/s, one group of bars per (receivers, size, window), one bar per
    server that has records in `section` (in the order of `servers`, then the
    others as they come); nothing of `section`: None."""
    pts, seen = {}, []
    for r in runs:
        res = r.get("result", {})
        if r["section"] != section or res.get("failed") or not res.get("deliveries_per_s"):
            continue
        key = (res.get("receivers", res.get("connections")), res.get("size"), res.get("window"))
        pts.setdefault((key, r["server"]), []).append(res["deliveries_per_s"])
        if r["server"] not in seen:
            seen.append(r["server"])
    order = [s for s in servers if s in seen] + [s for s in seen if s not in servers]
    keys = sorted({k for k, _ in pts}, key=lambda k: tuple(x or 0 for x in k))
    groups = [(k, "N=%s\n%s B, w%s" % k) for k in keys]
    return grouped_bars(outdir, name, "Fan-out: deliveries/s (median of the rounds; higher "
                        "is better)", groups, order, lambda k, s: median(pts.get((k, s), [])),
                        "deliveries/s", fmt=_fmt_rate)


def make_all(runs, servers, outdir, extra=()):
    """Every chart the records allow: {name: file name} of those written. extra:
    more (name, function(runs, outdir) -> file name or None) to run."""
    made = {}
    for name, fn in [("throughput", lambda r, o: throughput_chart(r, servers, o)),
                     ("rate", lambda r, o: rate_chart(r, servers, o)),
                     ("idle", lambda r, o: idle_chart(r, servers, o)),
                     ("fanout", lambda r, o: fanout_chart(r, servers, o))] + list(extra):
        f = fn(runs, outdir)
        if f:
            made[name] = f
    return made
