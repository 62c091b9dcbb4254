"""Line charts as inline SVG, drawn on the server: no script, no CDN, a title and a description
for screen readers, and the numbers in a table beside each chart."""
from __future__ import annotations

from markupsafe import Markup, escape

W, H = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 40
# distinguishable for the common colour-vision deficiencies, each at 4.5:1 or more on white
COLOURS = ("#0b5cad", "#b3440e", "#1b6e20", "#7b2d8e", "#8a6d00", "#a31515")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "4 4")


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def line_chart(chart_id: str, title: str, labels: list[str], series: dict[str, list[float | None]]) -> Markup:
    """`series` maps a name to one value per label (None: nothing measured there)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    head = (f'<svg id="{escape(chart_id)}" role="img" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" '
            f'viewBox="0 0 {W} {H}" width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{escape(chart_id)}-t">{escape(title)}</title>')
    if not values or not labels:
        return Markup(head + f'<desc id="{escape(chart_id)}-d">no data</desc>'
                      f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data yet</text></svg>')
    lo, hi = min(0.0, min(values)), max(values)
    hi = hi if hi > lo else lo + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i):
        return LEFT + (pw * i / (len(labels) - 1) if len(labels) > 1 else pw / 2)

    def y(v):
        return TOP + ph - (v - lo) / (hi - lo) * ph

    desc = "; ".join(f"{name}: " + ", ".join(f"{lab} {_fmt(v)}" for lab, v in zip(labels, vs) if v is not None)
                     for name, vs in series.items())
    parts = [head, f'<desc id="{escape(chart_id)}-d">{escape(desc)}</desc>',
             f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{W - RIGHT}" y2="{TOP + ph}" stroke="#4a4a4a"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#4a4a4a"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{W - RIGHT}" y2="{y(v):.1f}" stroke="#dddddd"/>'
                     f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(_fmt(v))}</text>')
    step = max(1, len(labels) // 6)
    for i, lab in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{escape(lab)}</text>')
    for n, (name, vs) in enumerate(series.items()):
        colour, dash = COLOURS[n % len(COLOURS)], DASHES[n % len(DASHES)]
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline class="series" data-series="{escape(name)}" points="{path}" fill="none" '
                         f'stroke="{colour}" stroke-width="2.5"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        for px, py in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"/>')
        lx = LEFT + 8 + n * 130
        parts.append(f'<line x1="{lx}" y1="{H - 10}" x2="{lx + 18}" y2="{H - 10}" stroke="{colour}" stroke-width="2.5"'
                     + (f' stroke-dasharray="{dash}"' if dash else "") + f'/><text x="{lx + 22}" y="{H - 6}">'
                     f'{escape(name[:18])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
