"""Instruments shared by the benchmark tests/bench/sustained.py and the soak
tests (tests/soak_idle.py, tests/soak_stream.py): what one process costs
(/proc/PID/stat), how much disk a node's state dir holds, etcd's database
size and revision (/v3/maintenance/status, over TLS as etcd's admin user),
queue depth (/metrics), and a
line chart written as SVG by hand. Standard library only; Linux only.
"""
import os
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "cluster"))
import local  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_sample(pid):
    """(cpu_seconds, rss_bytes) of a live process: utime+stime and RSS from
    /proc/PID/stat; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name (field 2) may hold spaces: split after ')'
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): utime is field 14, stime 15, rss 24
    utime, stime, rss = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / CLK_TCK, rss * PAGE


def dir_bytes(path):
    """Disk space used under path (allocated blocks, like du), 0 if absent."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass   # a LevelDB file compacted away while we walk
    return total


def etcd_status(c, timeout=5):
    """{"db": dbSize, "in_use": dbSizeInUse, "revision": header revision} of
    the first member of cluster c's etcd that answers (over TLS, as admin:
    local.Cluster.etcd_call); None if none does."""
    for member in range(1, c.etcd_members + 1):
        try:
            st = c.etcd_call("/v3/maintenance/status", {}, timeout=timeout, member=member)
        except (OSError, ValueError, local.EtcdError):
            continue
        return {"db": int(st.get("dbSize", 0)),
                "in_use": int(st.get("dbSizeInUse", st.get("dbSize", 0))),
                "revision": int(st.get("header", {}).get("revision", 0))}
    return None


def metrics_sum(port, prefixes, timeout=5):
    """Sum of the Prometheus samples whose line starts with one of prefixes
    on 127.0.0.1:port/metrics; None if unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                    timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(tuple(prefixes)):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def queue_depth(c):
    """Messages still queued on the queue nodes of local.Cluster c (to be
    delivered, plus every replica's stored copy); None if a node's
    /metrics does not answer."""
    total = 0
    for i in range(1, c.queues + 1):
        n = metrics_sum(c.metrics_port(f"queue-{i}"),
                        ("mail_queue_messages{", "mail_queue_stored{"))
        if n is None:
            return None
        total += n
    return total


def mb(n):
    return n / (1 << 20)


# ---- SVG line charts --------------------------------------------------------

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ticks(lo, hi, n=5):
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    while mag > raw:
        mag /= 10
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
    t = (lo // step) * step
    out = []
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            out.append(t)
        t += step
    return out


def _fmt(v):
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def svg_panel(x0, y0, w, h, title, xlabel, xs, series):
    """One chart as SVG elements (a list of strings), drawn in the box at
    (x0, y0) of size w x h. series: [(name, [y or None per x])]."""
    out = []
    left, right, top, bottom = 60, 150, 24, 36
    pw, ph = w - left - right, h - top - bottom
    ys = [y for _, vals in series for y in vals if y is not None]
    ylo, yhi = 0.0, max(ys) if ys else 1.0
    if yhi <= ylo:
        yhi = ylo + 1.0
    yhi *= 1.05
    xlo, xhi = (min(xs), max(xs)) if xs else (0, 1)
    if xhi <= xlo:
        xhi = xlo + 1

    def px(x):
        return x0 + left + (x - xlo) / (xhi - xlo) * pw

    def py(y):
        return y0 + top + ph - (y - ylo) / (yhi - ylo) * ph

    out.append(f'<text x="{x0 + left}" y="{y0 + 16}" font-size="13" '
               f'font-weight="bold">{_esc(title)}</text>')
    out.append(f'<rect x="{x0 + left}" y="{y0 + top}" width="{pw}" height="{ph}" '
               'fill="none" stroke="#999"/>')
    for t in _ticks(ylo, yhi):
        out.append(f'<line x1="{x0 + left}" x2="{x0 + left + pw}" y1="{py(t):.1f}" '
                   f'y2="{py(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + left - 4}" y="{py(t) + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(xlo, xhi):
        out.append(f'<text x="{px(t):.1f}" y="{y0 + top + ph + 14}" font-size="10" '
                   f'text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{x0 + left + pw / 2}" y="{y0 + h - 6}" font-size="11" '
               f'text-anchor="middle">{_esc(xlabel)}</text>')
    for k, (name, vals) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        pts = [(px(x), py(y)) for x, y in zip(xs, vals) if y is not None]
        if len(pts) > 1:
            out.append('<polyline fill="none" stroke-width="1.5" stroke="' + colour
                       + '" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{colour}"/>')
        ly = y0 + top + 12 + 14 * k
        out.append(f'<line x1="{x0 + left + pw + 10}" x2="{x0 + left + pw + 26}" '
                   f'y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{x0 + left + pw + 30}" y="{ly}" font-size="10">'
                   f'{_esc(name)}</text>')
    return out


def write_svg(path, title, xlabel, xs, panels, width=900, panel_h=260):
    """A column of line charts sharing the x values xs. panels:
    [(panel title, [(series name, [y per x])])]."""
    h = 30 + panel_h * len(panels)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" '
             f'font-family="sans-serif">',
             f'<rect width="{width}" height="{h}" fill="white"/>',
             f'<text x="10" y="20" font-size="15" font-weight="bold">{_esc(title)}</text>']
    for k, (ptitle, series) in enumerate(panels):
        parts += svg_panel(0, 30 + k * panel_h, width, panel_h, ptitle, xlabel, xs, series)
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")
