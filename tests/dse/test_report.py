"""Reading a sweep's results (doc/dse.md "Reading results"): the Pareto front, the text report, the
plots and the CSV, on hand-made records with a known answer."""
from __future__ import annotations

import csv
import itertools
import random

import pytest
from hypothesis import given, settings, strategies as st

from dlavm.compare.trace_plot import PlotError, require_matplotlib
from dlavm.dse.report import (DPI, METRICS, PANEL_INCHES, PARETO_INCHES, ReportError, check_rows, format_report,
                              pareto_front, varied_axes, write_csv, write_plots)

AXES = {"hbm_channels": [16, 32], "tin": [64, 128], "weights": ["int4", "int8"], "ctx": [512, 2048]}
SPEC = {"model": "llama2-7b-shape", "target": "vcu128", "sample": "grid", "n": None, "seed": 0, "llm": True,
        "axes": [{"name": n, "values": v} for n, v in AXES.items()] + [{"name": "seq", "values": [1]}]}
COMBOS = [dict(zip(AXES, c), seq=1) for c in itertools.product(*AXES.values())]


def metrics(tps, lut, nbytes, **extra):
    m = {k: 1 for k in METRICS}
    m.update(tokens_per_s=tps, lut=lut, weight_bytes=nbytes - nbytes // 4, kv_bytes=nbytes // 4,
             prefill_tokens_per_s=10.0 * tps, roofline_fraction=0.5, device_roofline_fraction=0.5 * 204.8 / 460.8,
             stream_bytes=4096)
    m.update(extra)
    return m


def record(index, status="ok", reason=None, params=None, **m):
    return {"point_id": f"{index:064x}", "index": index, "params": params or COMBOS[index], "status": status,
            "reason": reason, "metrics": metrics(**m) if status == "ok" else {},
            "compile_s": 0.5 + index, "sim_s": 0.25, "worker": f"host:{100 + index}"}


#: index: (tokens/s, lut, device bytes); the fronts are worked out by hand in the tests below
POINTS = {0: (10.0, 100, 1000), 1: (20.0, 200, 500), 2: (15.0, 200, 400), 3: (20.0, 300, 3000),
          4: (30.0, 400, 2000), 5: (30.0, 400, 600), 6: (5.0, 50, 5000)}
LUT_FRONT = [6, 0, 1, 4, 5]     # 2: 1 has more tokens/s for the same lut; 3: 1 has as many for less
BYTES_FRONT = [2, 1, 5]         # 4 ties 5 on tokens/s with more bytes; 0, 3, 6 are beaten by 1 or 5


def rows_known():
    rows = [record(i, tps=t, lut=lut, nbytes=b) for i, (t, lut, b) in POINTS.items()]
    rows += [record(7, "refused", "target: tin must divide sram_bytes / 64"),
             record(8, "refused", "target: tin must divide sram_bytes / 64"),
             record(9, "refused", "compile: weights int8 need 9 GiB, the HBM holds 8 GiB\nsecond line"),
             record(10, "failed", "profile: RuntimeError: worker died")]
    return rows


# ---------------------------------------------------------------- the front

def test_front_of_known_points():
    rows = rows_known()
    assert [r["index"] for r in pareto_front(rows, "lut")] == LUT_FRONT
    assert [r["index"] for r in pareto_front(rows, "bytes")] == BYTES_FRONT
    assert pareto_front([r for r in rows if r["status"] != "ok"], "lut") == []
    assert pareto_front([], "bytes") == []


def dominates(a, b):
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.sampled_from(["ok", "ok", "refused", "failed"])),
                max_size=25),
       st.randoms(use_true_random=False))
def test_front_property(points, rnd):
    """No front point is dominated; every other ok point is dominated by a front point; points with
    equal (x, y) are all on the front or all off it; the input order does not matter."""
    rows = [{"index": i, "params": {}, "status": s, "reason": None,
             "metrics": {"dsp": x, "tokens_per_s": float(y)} if s == "ok" else {}}
            for i, (x, y, s) in enumerate(points)]
    xy = {r["index"]: (r["metrics"]["dsp"], r["metrics"]["tokens_per_s"]) for r in rows if r["status"] == "ok"}
    front = [r["index"] for r in pareto_front(rows, "dsp")]
    assert len(set(front)) == len(front) and set(front) <= set(xy)
    for f in front:
        assert not any(dominates(xy[o], xy[f]) for o in xy)
    for o in set(xy) - set(front):
        assert any(dominates(xy[f], xy[o]) for f in front)
    for a, b in itertools.combinations(xy, 2):
        if xy[a] == xy[b]:
            assert (a in front) == (b in front)
    assert [xy[f][0] for f in front] == sorted(xy[f][0] for f in front)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    assert [r["index"] for r in pareto_front(shuffled, "dsp")] == front


def test_front_refuses_bad_names_and_values():
    rows = rows_known()
    with pytest.raises(ReportError, match="'area' is not a metric"):
        pareto_front(rows, "area")
    rows[3]["metrics"]["lut"] = float("nan")
    with pytest.raises(ReportError, match=r"point #3: metrics.lut is nan, must be a finite number"):
        pareto_front(rows, "lut")
    del rows[4]["metrics"]["kv_bytes"]
    with pytest.raises(ReportError, match=r"point #4: metrics.kv_bytes is None"):
        pareto_front(rows, "bytes")


@pytest.mark.parametrize("rows, message", [
    ({"a": 1}, "expected a list of point records, got dict"),
    ([1], "record 0 is a int, must be a dict"),
    ([{"index": "3", "status": "ok"}], "record 0: index '3' must be an integer >= 0"),
    ([{"index": 3, "status": "done"}], "point #3: status 'done' must be one of ok, refused, failed"),
    ([{"index": 3, "status": "ok", "params": [1]}], "point #3: params must be a dict, got list"),
    ([{"index": 3, "status": "failed", "reason": 7}], "point #3: reason 7 must be a string or null"),
])
def test_malformed_records_are_one_line_errors(rows, message):
    with pytest.raises(ReportError) as e:
        check_rows(rows)
    assert str(e.value).endswith(message) and "\n" not in str(e.value)


# ---------------------------------------------------------------- the text report

def table(text, title):
    """The lines of the table under the line that starts with ``title``: header first."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def indices(tab):
    return [int(line.split()[0]) for line in tab[1:]]


def test_report_of_known_points():
    text = format_report(SPEC, rows_known())
    lines = text.splitlines()
    assert lines[0] == "dse report: llama2-7b-shape on vcu128"
    assert lines[1] == "11 points stored: 7 ok, 3 refused, 1 failed"
    assert lines[2] == ("varied: hbm_channels (2 values), tin (2 values), weights (2 values), "
                        "ctx (2 values)")
    assert lines[3] == "fixed: seq=1"
    assert "refused (3 points, 2 reasons)" in lines
    assert "failed (1 point, 1 reason)" in lines
    at = lines.index("refused (3 points, 2 reasons)")
    assert lines[at + 1:at + 5] == [
        "  2  target: tin must divide sram_bytes / ...",                  # numbers differ within a kind
        "     e.g. #7 hbm_channels=16 tin=128 weights=int8 ctx=2048: target: tin must divide sram_bytes / 64",
        "  1  compile: weights int8 need ... GiB, the HBM holds ... GiB",   # first line of the reason only
        "     e.g. #9 hbm_channels=32 tin=64 weights=int4 ctx=2048: compile: weights int8 need 9 GiB, the HBM "
        "holds 8 GiB"]
    assert "second line" not in text
    best = table(text, "best 7 of 7 ok points by tokens/s")
    assert best[0].split() == ["#", "hbm_channels", "tin", "weights", "ctx", "tokens/s", "prefill", "tok/s", "%",
                               "port", "peak", "%", "device", "peak", "lut", "stream", "bytes"]
    assert indices(best) == [4, 5, 1, 3, 2, 0, 6]        # tokens/s, highest first; ties by index
    assert indices(table(text, "Pareto front: tokens/s vs lut: 5 of 7")) == LUT_FRONT
    bytes_front = table(text, "Pareto front: tokens/s vs device bytes")
    assert indices(bytes_front) == BYTES_FRONT
    assert "bytes" in bytes_front[0].split() and "lut" not in bytes_front[0].split()
    assert text.endswith("\n") and "Traceback" not in text


def test_report_tables_are_aligned():
    text = format_report(SPEC, rows_known(), resource="dsp")
    for title in ("best ", "Pareto front: tokens/s vs dsp", "Pareto front: tokens/s vs device bytes"):
        tab = table(text, title)
        assert len({len(line) for line in tab}) == 1, tab    # the last column is right-aligned
        edge = tab[0].index("tokens/s") + len("tokens/s")
        for line in tab[1:]:
            assert line[edge - 1] != " " and line[edge] == " "
            float(line[:edge].split()[-1].replace(",", ""))   # the number ends under the header
    assert table(text, "best ")[1].split()[:5] == ["4", "16", "128", "int4", "512"]


def test_report_numbers():
    rows = [record(0, tps=41.2345, lut=1234567, nbytes=3 << 30)]
    text = format_report(SPEC, rows)
    cells = table(text, "best 1 of 1")[1].split()
    # index, 4 params, tokens/s, prefill tok/s, % port peak, % device peak, lut, stream bytes (two words)
    assert cells == ["0", "16", "64", "int4", "512", "41.23", "412.3", "50.0", "22.2", "1,234,567", "4.00", "KiB"]
    assert "3.00 GiB" in table(text, "Pareto front: tokens/s vs device bytes")[1]


def test_report_does_not_depend_on_engine_or_order():
    rows = rows_known()
    other = [dict(r, compile_s=99.0, sim_s=12.0, worker="elsewhere:1") for r in rows]
    random.Random(3).shuffle(other)
    assert format_report(SPEC, other) == format_report(SPEC, rows)


def test_report_top():
    text = format_report(SPEC, rows_known(), top=2)
    assert indices(table(text, "best 2 of 7 ok points")) == [4, 5]
    with pytest.raises(ReportError, match="top: 0 must be an integer >= 1"):
        format_report(SPEC, rows_known(), top=0)


def test_report_without_rows():
    text = format_report(SPEC, [])
    assert text.splitlines()[1] == "0 points stored: 0 ok, 0 refused, 0 failed"
    assert "no points stored yet: nothing to report" in text


def test_report_without_ok_rows():
    rows = [r for r in rows_known() if r["status"] != "ok"]
    text = format_report(SPEC, rows)
    assert "4 points stored: 0 ok, 3 refused, 1 failed" in text
    assert "refused (3 points, 2 reasons)" in text and "failed (1 point, 1 reason)" in text
    assert text.rstrip().endswith("no ok point: no best points and no Pareto front")


def test_report_of_one_point_without_varied_axes():
    spec = {"model": "m", "target": "t.yaml", "axes": [{"name": "weights", "values": ["int4"]}]}
    rows = [record(0, params={"weights": "int4"}, tps=3.0, lut=10, nbytes=100)]
    assert varied_axes(spec, rows) == []
    text = format_report(spec, rows)
    assert "varied:" not in text and "fixed: weights=int4" in text
    assert table(text, "best 1 of 1 ok point")[0].split()[:2] == ["#", "tokens/s"]
    assert indices(table(text, "Pareto front: tokens/s vs lut")) == [0]


def test_varied_axes_from_rows_and_ranges():
    spec = {"model": "m", "target": "t", "sample": "lhs", "n": 4,
            "axes": [{"name": "clock_mhz", "lo": 150, "hi": 300, "step": None}, {"name": "tin", "values": [64]},
                     {"name": "seq", "values": [1]}]}
    rows = [record(0, params={"clock_mhz": 150.0, "tin": 64, "seq": 1, "extra": 1}, tps=1.0, lut=1, nbytes=1),
            record(1, params={"clock_mhz": 150.0, "tin": 64, "seq": 1, "extra": 2}, tps=1.0, lut=1, nbytes=1)]
    assert varied_axes(spec, rows) == ["clock_mhz", "extra"]     # a range varies; extra differs between rows


@pytest.mark.parametrize("kwargs, message", [
    ({"resource": "bram"}, "resource: 'bram' is not one of lut, ff, dsp, bram36, uram"),
])
def test_report_refuses_bad_options(kwargs, message):
    with pytest.raises(ReportError, match=message):
        format_report(SPEC, rows_known(), **kwargs)
    with pytest.raises(ReportError, match="sweep definition: expected an object, got list"):
        format_report([], rows_known())
    with pytest.raises(ReportError, match=r"sweep definition: axes\[0\] = 3 must be an object with a 'name'"):
        format_report({"model": "m", "axes": [3]}, rows_known())
    with pytest.raises(ReportError, match=r"sweep definition: .*tin = 1.5 must be an integer"):
        format_report({"model": "m", "axes": [{"name": "tin", "values": [1.5]}]}, rows_known())


def test_report_marks_points_over_a_part():
    resources = pytest.importorskip("dlavm.target.resources",
                                    reason="dlavm.target.resources (the area model) is not in this tree yet")
    cap = resources.PARTS["xcvu37p"][0]
    rows = rows_known()
    rows[4]["metrics"].update(lut=cap.lut + 1, ff=1, dsp=cap.dsp * 2, bram36=1, uram=1)
    rows[5]["metrics"].update(lut=cap.lut, ff=1, dsp=1, bram36=1, uram=1)
    text = format_report(SPEC, rows, part="xcvu37p")
    assert "part xcvu37p: 1 of 7 ok points exceed it (lut 1, dsp 1)" in text
    best = table(text, "best ")
    assert best[0].split()[-2:] == ["over", "xcvu37p"]
    marks = {int(line.split()[0]): line.split()[-1] for line in best[1:]}
    assert marks[4] == "lut,dsp" and marks[5] == "-" and marks[0] == "-"
    with pytest.raises(ReportError, match="part: unknown FPGA part 'xc7z020'; known: .*xcvu37p"):
        format_report(SPEC, rows, part="xc7z020")


# ---------------------------------------------------------------- plots

def png_size(path):
    from PIL import Image
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def px(inches):
    return tuple(round(v * DPI) for v in inches)


@pytest.fixture
def mpl():
    return require_matplotlib("drawing the dse plots")


def test_plots_of_known_points(mpl, tmp_path):
    paths = write_plots(SPEC, rows_known(), tmp_path / "out")
    assert [p.name for p in paths] == ["pareto.png", "params.png"]
    assert png_size(paths[0]) == px(PARETO_INCHES)
    # four varied axes: three panels in the first row, one in the second
    assert png_size(paths[1]) == (px(PANEL_INCHES)[0] * 3, px(PANEL_INCHES)[1] * 2)


def test_plots_are_deterministic(mpl, tmp_path):
    rows = rows_known()
    a = write_plots(SPEC, rows, tmp_path / "a", resource="dsp")
    other = [dict(r, compile_s=7.0, worker="x:1") for r in rows]
    random.Random(1).shuffle(other)
    b = write_plots(SPEC, other, tmp_path / "b", resource="dsp")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_plots_of_one_point(mpl, tmp_path):
    spec = {"model": "m", "target": "t", "axes": [{"name": "weights", "values": ["int8"]}]}
    paths = write_plots(spec, [record(0, params={"weights": "int8"}, tps=3.0, lut=10, nbytes=100)], tmp_path)
    assert png_size(paths[0]) == px(PARETO_INCHES)
    assert png_size(paths[1]) == px(PANEL_INCHES)            # no axis varies: one panel that says so


@pytest.mark.parametrize("which", ["none", "no ok"])
def test_plots_without_ok_points(mpl, tmp_path, which):
    rows = [] if which == "none" else [r for r in rows_known() if r["status"] != "ok"]
    paths = write_plots(SPEC, rows, tmp_path)
    assert png_size(paths[0]) == px(PARETO_INCHES)
    assert png_size(paths[1]) == (px(PANEL_INCHES)[0] * 3, px(PANEL_INCHES)[1] * 2)   # the spec's axes vary


def test_plots_of_categorical_and_log_axes(mpl, tmp_path):
    """weights is drawn as categories, ctx over a wide range on a log axis; one varied axis: one panel."""
    spec = {"model": "m", "target": "t", "axes": [{"name": "weights", "values": ["fp16", "int4", "int8"]},
                                                  {"name": "ctx", "values": [128, 4096]}]}
    params = [{"weights": w, "ctx": c} for w in ("fp16", "int4", "int8") for c in (128, 4096)]
    rows = [record(i, params=p, tps=1.0 + i, lut=10 * (i + 1), nbytes=(1 << 20) * 100 ** (i % 3))
            for i, p in enumerate(params)]
    rows[2] = record(2, "refused", "no", params=params[2])
    paths = write_plots(spec, rows, tmp_path)
    assert png_size(paths[1]) == (px(PANEL_INCHES)[0] * 2, px(PANEL_INCHES)[1])


def test_plots_mark_the_part(mpl, tmp_path):
    pytest.importorskip("dlavm.target.resources",
                        reason="dlavm.target.resources (the area model) is not in this tree yet")
    paths = write_plots(SPEC, rows_known(), tmp_path, part="xcu280")
    assert png_size(paths[0]) == px(PARETO_INCHES)


def test_plots_refuse_a_bad_resource(tmp_path):
    with pytest.raises(ReportError, match="resource: 'LUT' is not one of"):
        write_plots(SPEC, rows_known(), tmp_path, resource="LUT")


def test_plots_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)   # `import matplotlib` now fails
    with pytest.raises(PlotError, match="drawing the dse plots needs matplotlib") as e:
        write_plots(SPEC, rows_known(), tmp_path)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- CSV

def test_csv_round_trip(tmp_path):
    rows = rows_known()
    rows[0]["metrics"]["tokens_per_s"] = 1 / 3
    rows[1]["metrics"]["custom"] = 5
    path = write_csv(list(reversed(rows)), tmp_path / "results.csv")
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    header = list(got[0])
    assert header[:8] == ["index", "point_id", "hbm_channels", "tin", "weights", "ctx", "seq", "status"]
    assert header[8:10] == ["reason", "tokens_per_s"] and header[-4:] == ["custom", "compile_s", "sim_s", "worker"]
    assert [int(g["index"]) for g in got] == list(range(11))
    assert float(got[0]["tokens_per_s"]) == 1 / 3                      # floats read back exactly
    assert got[1]["custom"] == "5" and got[0]["custom"] == ""
    assert got[9]["status"] == "refused" and got[9]["reason"].startswith("compile: weights int8")
    assert got[9]["tokens_per_s"] == "" and got[9]["lut"] == ""
    assert [got[i]["weights"] for i in range(4)] == ["int4", "int4", "int8", "int8"] and got[2]["ctx"] == "512"


def test_csv_names_a_metric_that_is_also_a_parameter(tmp_path):
    rows = [record(0, params={"clock_mhz": 200.0}, tps=1.0, lut=1, nbytes=1, clock_mhz=200.0)]
    with write_csv(rows, tmp_path / "r.csv").open(newline="") as f:
        got = next(csv.DictReader(f))
    assert got["clock_mhz"] == "200.0" and got["metrics.clock_mhz"] == "200.0"
    with pytest.raises(ReportError, match="parameter 'status' has the name of a CSV column"):
        write_csv([record(0, params={"status": 1}, tps=1.0, lut=1, nbytes=1)], tmp_path / "s.csv")


def test_csv_of_no_rows(tmp_path):
    with write_csv([], tmp_path / "r.csv").open(newline="") as f:
        lines = list(csv.reader(f))
    assert len(lines) == 1 and lines[0][:3] == ["index", "point_id", "status"]


def test_refusals_of_one_kind_group_together_whatever_their_addresses_and_target_names():
    from dlavm.dse.report import reason_kind
    a = ("compile: pool 'weights' [0x0, 0x18a06aa20) does not fit region hbm [0x0, 0x100000000) of target "
         "'vcu128[hbm_channels=16,hbm_channel_bytes=268435456]'")
    b = ("compile: pool 'weights' [0x0, 0x313ac3020) does not fit region hbm [0x0, 0x300000000) of target "
         "'vcu128[hbm_channels=48]'")
    c = a.replace("'weights'", "'kv'")
    assert reason_kind(a) == reason_kind(b) != reason_kind(c)
    assert reason_kind(a) == "compile: pool 'weights' [..., ...) does not fit region hbm [..., ...) of target '...'"
    assert reason_kind("target: int4_group=128 and tin=24 must divide one another\nmore") == \
        "target: int4_group=... and tin=... must divide one another"
    assert reason_kind("worker process died (signal SIGKILL) while evaluating this point").endswith("this point")
