"""Inline SVG charts: well-formed, accessible, escaped, NaN-aware, correctly scaled."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from markupsafe import Markup
from PIL import Image as PILImage

from generator.site import figures, heatmap, linechart
from generator.site import svg as base
from generator.site.heatmap import confusion_heatmap
from generator.site.linechart import Band, Series, line_chart

SVG = "{http://www.w3.org/2000/svg}"
EVIL = "<img src=x onerror=alert(1)>"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))


def points(polyline: ET.Element) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in polyline.get("points").split()])


def test_line_chart_is_accessible_svg_markup() -> None:
    svg = line_chart(
        [Series("loss", np.array([3.0, 2.0, 1.0]), base.TRAIN)],
        title="Loss per epoch",
        y_label="loss",
    )
    assert isinstance(svg, Markup)
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert "Loss per epoch" in root.get("aria-label")
    assert root.find(f"{SVG}title").text == "Loss per epoch"
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "epoch" in labels and "loss" in labels  # both axis labels


def test_higher_values_are_drawn_higher_and_epochs_left_to_right() -> None:
    root = parse(
        line_chart(
            [Series("acc", np.array([0.1, 0.5, 0.9]), "#fff")],
            title="t",
            y_label="y",
            y_min=0,
            y_max=1,
        )
    )
    xy = points(next(root.iter(f"{SVG}polyline")))
    assert np.all(np.diff(xy[:, 0]) > 0)
    assert np.all(np.diff(xy[:, 1]) < 0)  # SVG y grows downwards


def test_nan_points_are_skipped_not_drawn_as_zero() -> None:
    values = np.array([np.nan, 1.0, 2.0, np.nan, 3.0, 4.0])
    root = parse(line_chart([Series("train", values, "#fff")], title="t", y_label="y"))
    lines = list(root.iter(f"{SVG}polyline"))
    assert [len(points(p)) for p in lines] == [2, 2]  # two runs, NaNs break the line


def test_isolated_point_is_still_visible() -> None:
    # a 1-epoch run: the training metric has one defined value after the NaN at epoch 0
    root = parse(
        line_chart([Series("train", np.array([np.nan, 0.7]), "#fff")], title="t", y_label="y")
    )
    assert not list(root.iter(f"{SVG}polyline"))
    assert len([c for c in root.iter(f"{SVG}circle")]) == 1


def test_all_nan_says_no_data() -> None:
    svg = line_chart([Series("x", np.full(4, np.nan), "#fff")], title="t", y_label="y")
    assert "no data yet" in svg
    parse(svg)


def test_text_is_escaped_everywhere() -> None:
    svg = line_chart(
        [Series(EVIL, np.array([1.0, 2.0]), "#fff")],
        bands=[Band(EVIL, np.zeros(2), np.ones(2), "#fff")],
        title=EVIL,
        y_label=EVIL,
        markers=True,
    )
    assert "<img" not in svg
    root = parse(svg)  # still well-formed XML
    assert root.find(f"{SVG}title").text == EVIL  # the text itself survives, as text


def test_markers_carry_value_tooltips() -> None:
    root = parse(
        line_chart(
            [Series("val", np.array([0.5, 0.25]), "#fff")],
            title="t",
            y_label="y",
            markers=True,
            y_format=base.percent,
        )
    )
    tips = [t.text for c in root.iter(f"{SVG}circle") for t in c.iter(f"{SVG}title")]
    assert tips == ["val, epoch 0: 50%", "val, epoch 1: 25%"]


def test_legend_lists_every_series_when_several() -> None:
    series = [
        Series(f"block{i}", np.arange(3.0) + i, c) for i, c in enumerate(base.depth_colors(5), 1)
    ]
    root = parse(line_chart(series, title="t", y_label="y"))
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == [f"block{i}" for i in range(1, 6)]


def test_charts_of_one_size_keep_their_own_epoch_axis_and_legend() -> None:
    """A site draws thousands of charts of one size and reuses their epoch axis and
    legend: a chart with other epochs, another x label or other series still gets its
    own, and a chart of an int size is drawn alike after one of the equal float size."""

    def chart(epochs: int, x_label: str, names: tuple[str, ...], size=(360, 190)) -> ET.Element:
        series = [Series(n, np.arange(float(epochs)), "#fff") for n in names]
        return parse(line_chart(series, title="t", y_label="y", x_label=x_label, size=size))

    def axis(root: ET.Element) -> list[str]:
        x = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "axis x")
        return [t.text for t in x.iter(f"{SVG}text")]

    def legend(root: ET.Element) -> list[str]:
        group = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
        return [t.text for t in group.iter(f"{SVG}text")]

    first = chart(3, "epoch", ("a", "b"))
    assert axis(first) == ["0", "1", "2", "epoch"] and legend(first) == ["a", "b"]
    assert axis(chart(5, "epoch", ("a", "b"))) == ["0", "1", "2", "3", "4", "epoch"]
    assert axis(chart(3, "step", ("a", "b")))[-1] == "step"
    assert legend(chart(3, "epoch", ("c", "d", "e"))) == ["c", "d", "e"]
    linechart._legend.cache_clear()
    alone = ET.tostring(chart(3, "epoch", ("a", "b"), size=(360, 190)))
    linechart._legend.cache_clear()
    chart(3, "epoch", ("a", "b"), size=(360.0, 190.0))  # equal as a key, drawn otherwise
    assert ET.tostring(chart(3, "epoch", ("a", "b"), size=(360, 190))) == alone


def test_log_axis_spans_the_data_with_round_ticks() -> None:
    values = np.array([np.nan, 0.16, 0.05, 0.016])
    root = parse(line_chart([Series("w", values, "#fff")], title="t", y_label="y", log_y=True))
    axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "axis y")
    ticks = [t.text for t in axis.iter(f"{SVG}text") if t.get("class") is None]
    assert ticks == ["0.01", "0.02", "0.05", "0.1", "0.2"]


def test_band_is_a_closed_polygon_between_lower_and_upper() -> None:
    root = parse(
        line_chart(
            [],
            bands=[Band("range", np.zeros(3), np.ones(3), "#fff")],
            title="t",
            y_label="y",
            y_min=0,
            y_max=1,
        )
    )
    poly = points(next(root.iter(f"{SVG}polygon")))
    assert len(poly) == 6
    assert poly[:3, 1].max() < poly[3:, 1].min()  # upper edge drawn above the lower


def test_epoch_marker_and_its_scale_for_the_page_script() -> None:
    root = parse(line_chart([Series("a", np.arange(5.0), "#fff")], title="t", y_label="y"))
    marker = next(e for e in root.iter(f"{SVG}line") if e.get("class") == "epoch-marker")
    x0, dx = float(root.get("data-x0")), float(root.get("data-dx"))
    assert float(marker.get("x1")) == pytest.approx(x0 + 4 * dx, abs=0.1)


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    ticks = base.nice_ticks(0.013, 0.87)
    assert ticks[0] <= 0.013 and ticks[-1] >= 0.87
    assert np.allclose(np.diff(ticks), ticks[1] - ticks[0])
    assert 3 <= len(ticks) <= 8


@pytest.mark.parametrize("hi", [1e19, 1e20, 3.4e38])
def test_nice_ticks_of_a_blown_up_range_are_floats(hi: float) -> None:
    """A run whose activations blew up (1e20) charts like any other; the ticks were Python
    ints past int64 there, an object array that np.round refused, and the build failed."""
    ticks = base.nice_ticks(0.0, hi)
    assert ticks.dtype == np.float64 and ticks[0] <= 0 and ticks[-1] >= hi
    assert 3 <= len(ticks) <= 8


def test_confusion_heatmap_shades_rows_and_escapes_names() -> None:
    counts = np.array([[3, 1], [0, 0]])
    svg = confusion_heatmap(counts, ["cat", EVIL], title="Confusion")
    assert "<img" not in svg
    root = parse(svg)
    cells = sorted(
        (int(r.get("data-cell")), float(r.get("fill-opacity")))
        for r in root.iter(f"{SVG}rect")
        if r.get("data-cell") is not None
    )
    floor = base.HEAT_FLOOR
    assert [o for _, o in cells] == pytest.approx(
        [floor + (1 - floor) * 0.75, floor + (1 - floor) * 0.25, floor, floor], abs=1e-3
    )
    counts_text = {
        int(t.get("data-count")): t.text
        for t in root.iter(f"{SVG}text")
        if t.get("data-count") is not None
    }
    assert counts_text == {0: "3", 1: "1", 2: "0", 3: "0"}
    assert any(t.text == EVIL for t in root.iter(f"{SVG}title"))


def test_row_shares_of_an_empty_row_are_zero() -> None:
    shares = heatmap.row_shares(np.array([[[2, 2], [0, 0]]]))
    assert shares.tolist() == [[[0.5, 0.5], [0.0, 0.0]]]


def test_depth_colors_run_from_first_to_last_stop() -> None:
    colors = base.depth_colors(4)
    assert colors[0] == base.DEPTH_STOPS[0] and colors[-1] == base.DEPTH_STOPS[-1]
    assert len(set(colors)) == 4


def test_many_classes_make_a_raster_confusion_matrix_and_capped_probe_charts() -> None:
    k = heatmap.SVG_MAX_CLASSES + 1
    counts = np.tile(np.eye(k, dtype=np.int64), (2, 1, 1))
    counts[-1, 0, 1] = 3
    names = [f"c{i}" for i in range(k)]
    view, files = figures.confusion(counts, names, image_path="runs/a/c.png", here="runs/a/x.html")
    assert view.chart is None and view.data is None and view.image.src == "c.png"
    image = PILImage.open(io.BytesIO(files["runs/a/c.png"]))
    assert image.size == (k, k) and image.mode == "RGBA"
    assert view.pairs[0].true == "c0" and view.pairs[0].predicted == "c1"
    chart = figures.probe_chart(np.full((2, 1000), 0.001), 7, [f"c{i}" for i in range(1000)], 1)
    assert len(list(parse(chart.svg).iter(f"{SVG}polyline"))) == figures.PROBE_CLASSES
    assert "of 1000 classes" in chart.caption


def test_raster_is_pooled_beyond_its_largest_side() -> None:
    shares, factor = heatmap.pooled_shares(np.eye(5, dtype=np.int64), max_side=2)
    assert factor == 3 and shares.shape == (2, 2)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
