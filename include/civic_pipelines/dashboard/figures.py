"""Plotly figures as plain dicts (plotly.js reads them as they are; building them with
plotly.graph_objects would validate every property on every request, tens of milliseconds a page).
The tests validate each figure with plotly.graph_objects instead.

Maps are drawn on ordinary x/y axes (longitude, latitude, with the latitude axis scaled by
1/cos(latitude) so distances look right), not on a tile map: tiles would need the internet and
WebGL, and the dashboard must work offline and in a browser without a GPU.
"""

from __future__ import annotations

import math

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
]
# Light to dark blue: the choropleth's scale.
SEQUENTIAL = [(0.0, (222, 235, 247)), (0.5, (107, 174, 214)), (1.0, (8, 48, 107))]

BASE_LAYOUT = {
    "margin": {"l": 60, "r": 20, "t": 10, "b": 50},
    "height": 340,
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    "legend": {"orientation": "h", "y": -0.2},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "#fafbfc",
    "hovermode": "closest",
}


def layout(**overrides) -> dict:
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in BASE_LAYOUT.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def month_label(value) -> str:
    return value.strftime("%Y-%m") if hasattr(value, "strftime") else str(value)[:7]


def lines(series: dict[str, list[tuple]], y_title: str, x_title: str = "month", mode: str = "lines+markers") -> dict:
    """One line per series; each series is [(x, y), ...]."""
    data = []
    for i, (name, points) in enumerate(series.items()):
        data.append(
            {
                "type": "scatter",
                "mode": mode,
                "name": name,
                "x": [month_label(x) for x, _ in points],
                "y": [y for _, y in points],
                "line": {"color": color(i)},
            }
        )
    return {
        "data": data,
        "layout": layout(
            xaxis={"title": {"text": x_title}, "type": "category"},
            yaxis={"title": {"text": y_title}, "rangemode": "tozero"},
        ),
    }


def daily_lines(series: dict[str, list[tuple]], y_title: str, x_title: str = "day") -> dict:
    """One line per series on a date axis; each series is [(date or datetime, y), ...]."""
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": name,
            "x": [x.isoformat() for x, _ in points],
            "y": [y for _, y in points],
            "line": {"color": color(i)},
        }
        for i, (name, points) in enumerate(series.items())
    ]
    return {
        "data": data,
        "layout": layout(
            xaxis={"title": {"text": x_title}, "type": "date"},
            yaxis={"title": {"text": y_title}, "rangemode": "tozero"},
        ),
    }


def histogram(series: dict[str, list[tuple[float, int]]], bin_width: float, x_title: str) -> dict:
    """Counts per bin (binned in SQL), one bar series per group, side by side; each [(bin start, n)]."""
    data = [
        {
            "type": "bar",
            "name": name,
            "x": [b + bin_width / 2 for b, _ in bins],
            "y": [n for _, n in bins],
            "width": bin_width / max(len(series), 1),
            "marker": {"color": color(i)},
            "opacity": 0.85,
        }
        for i, (name, bins) in enumerate(series.items())
    ]
    return {
        "data": data,
        "layout": layout(
            barmode="group", bargap=0, xaxis={"title": {"text": x_title}}, yaxis={"title": {"text": "trips"}}
        ),
    }


def stacked_bars(
    categories: list[str], series: dict[str, list], y_title: str, x_title: str = "month", barmode: str = "stack"
) -> dict:
    data = [
        {"type": "bar", "name": name, "x": categories, "y": values, "marker": {"color": color(i)}}
        for i, (name, values) in enumerate(series.items())
    ]
    return {
        "data": data,
        "layout": layout(
            barmode=barmode, xaxis={"title": {"text": x_title}, "type": "category"}, yaxis={"title": {"text": y_title}}
        ),
    }


def ranking(
    labels: list[str], values: list, x_title: str, series: dict[str, list] | None = None, hover: list[str] | None = None
) -> dict:
    """Horizontal bars, largest on top; ``series`` stacks several measures per label."""
    series = series or {x_title: values}
    labels = _unique(labels)
    height = max(260, 22 * len(labels) + 80)
    data = []
    for i, (name, vals) in enumerate(series.items()):
        trace = {
            "type": "bar",
            "orientation": "h",
            "name": name,
            "y": labels[::-1],
            "x": list(vals)[::-1],
            "marker": {"color": color(i)},
        }
        if hover:
            trace["customdata"] = hover[::-1]
            trace["hovertemplate"] = "%{y}: %{x}<br>%{customdata}<extra></extra>"
        data.append(trace)
    return {
        "data": data,
        "layout": layout(
            height=height,
            barmode="stack",
            showlegend=len(series) > 1,
            margin={"l": 220},
            xaxis={"title": {"text": x_title}},
            yaxis={"automargin": True, "type": "category"},
        ),
    }


def _unique(labels: list[str]) -> list[str]:
    """A category axis merges equal labels: number the repeats."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def sunburst(ids: list[str], labels: list[str], parents: list[str], values: list) -> dict:
    return {
        "data": [
            {
                "type": "sunburst",
                "ids": ids,
                "labels": labels,
                "parents": parents,
                "values": values,
                "branchvalues": "total",
                "maxdepth": 2,
            }
        ],
        "layout": layout(height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10}),
    }


def donut(labels: list[str], values: list) -> dict:
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.45,
                "labels": labels,
                "values": values,
                "sort": True,
                "marker": {"colors": [color(i) for i in range(len(labels))]},
            }
        ],
        "layout": layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "v"}),
    }


def _geo_axes(lats: list[float]) -> tuple[dict, dict]:
    mid = (min(lats) + max(lats)) / 2 if lats else 0.0
    ratio = 1 / max(math.cos(math.radians(mid)), 0.2)
    xaxis = {"title": {"text": "longitude"}, "showgrid": False, "zeroline": False, "constrain": "domain"}
    yaxis = {
        "title": {"text": "latitude"},
        "showgrid": False,
        "zeroline": False,
        "scaleanchor": "x",
        "scaleratio": ratio,
    }
    return xaxis, yaxis


def point_map(groups: dict[str, list[tuple[float, float, str]]]) -> dict:
    """Points by group, each (lon, lat, hover text)."""
    data, lats = [], []
    for i, (name, points) in enumerate(groups.items()):
        lats += [p[1] for p in points]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "x": [p[0] for p in points],
                "y": [p[1] for p in points],
                "text": [p[2] for p in points],
                "hoverinfo": "text+name",
                "marker": {"size": 4, "opacity": 0.6, "color": color(i)},
            }
        )
    xaxis, yaxis = _geo_axes(lats)
    return {"data": data, "layout": layout(height=460, xaxis=xaxis, yaxis=yaxis)}


def _shade(fraction: float) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    for (x0, c0), (x1, c1) in zip(SEQUENTIAL, SEQUENTIAL[1:]):
        if fraction <= x1:
            t = (fraction - x0) / (x1 - x0)
            r, g, b = (round(a + (b_ - a) * t) for a, b_ in zip(c0, c1))
            return f"rgb({r},{g},{b})"
    return "rgb({},{},{})".format(*SEQUENTIAL[-1][1])


def choropleth(areas: list[tuple[str, list, float | None]], value_title: str) -> dict:
    """Filled areas, each (name, exterior rings [(lon, lat), ...], value or None), with a colour bar."""
    values = [v for _, _, v in areas if v is not None]
    low, high = (min(values), max(values)) if values else (0, 1)
    span = (high - low) or 1
    data, lats = [], []
    for name, rings, value in areas:
        xs, ys = [], []
        for ring in rings:
            xs += [p[0] for p in ring] + [None]
            ys += [p[1] for p in ring] + [None]
            lats += [p[1] for p in ring]
        fill = _shade((value - low) / span) if value is not None else "rgba(0,0,0,0.04)"
        label = f"{name}: {value:,.0f} {value_title}" if value is not None else f"{name}: none"
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs[:-1],
                "y": ys[:-1],
                "fill": "toself",
                "fillcolor": fill,
                "line": {"color": "#ffffff", "width": 1},
                "name": name,
                "text": label,
                "hoveron": "fills",
                "hoverinfo": "text",
                "showlegend": False,
            }
        )
    # an invisible marker trace carries the colour bar
    data.append(
        {
            "type": "scatter",
            "mode": "markers",
            "x": [None],
            "y": [None],
            "showlegend": False,
            "hoverinfo": "skip",
            "marker": {
                "size": 0,
                "color": [low, high],
                "cmin": low,
                "cmax": high,
                "showscale": True,
                "colorscale": [[x, "rgb({},{},{})".format(*c)] for x, c in SEQUENTIAL],
                "colorbar": {"title": {"text": value_title}, "thickness": 12},
            },
        }
    )
    xaxis, yaxis = _geo_axes(lats)
    return {"data": data, "layout": layout(height=460, xaxis=xaxis, yaxis=yaxis)}
