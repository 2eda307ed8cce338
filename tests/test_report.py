"""`ftflow report` (self-contained HTML with every plot and table) and `ftflow export` (buildable projects)."""

import base64
import csv
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from flow.cli import main
from flow.errors import FlowError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = {"vulnerability", "critical vs cost", "overhead", "pareto", "pruning"}


class _Page(HTMLParser):
    """Collects images (alt -> src), table captions and header cells, and external references."""

    def __init__(self):
        super().__init__()
        self.images, self.captions, self.headers, self.external = {}, [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images[attrs["alt"]] = attrs["src"]
        if tag in ("link", "script") or (tag == "img" and not attrs["src"].startswith("data:")):
            self.external.append(tag)
        self._in = tag

    def handle_data(self, data):
        if self._in == "caption":
            self.captions.append(data)
        elif self._in == "th":
            self.headers.append(data)


def _page(path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


@pytest.mark.slow
def test_report_embeds_every_plot_and_the_comparison_table(compare_run, capsys):
    _, out, _ = compare_run
    assert main(["report", str(out), "--title", "tiny LeNet"]) == 0
    path = out / "report" / "index.html"
    assert str(path) in capsys.readouterr().out
    page = _page(path)
    assert set(page.images) == FIGURES
    for alt, src in page.images.items():
        assert src.startswith("data:image/png;base64,"), alt
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE, alt
    assert page.external == []  # self-contained: no scripts, stylesheets or image files
    assert any("compare/table.csv" in c for c in page.captions)
    with open(out / "compare" / "table.csv") as f:
        variants = [row["variant"] for row in csv.DictReader(f)]
    text = path.read_text()
    assert all(f"<td>{v}</td>" in text for v in variants)
    assert {"critical_rate", "LUT", "DSP", "latency_cycles", "fits_board"} <= set(page.headers)
    assert {"LUT_analytic", "LUT_yosys_calibrated", "LUT_yosys_over_analytic"} <= set(page.headers)
    assert "<title>tiny LeNet</title>" in text


# appended to a copy of the report: once every image has loaded (or failed), what the browser decoded goes into the DOM
_PROBE = """<script>
window.addEventListener("load", () => {
  const seen = [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
                                             height: i.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "ftflow-probe";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""


def _browser() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)  # fmt: skip


@pytest.mark.slow
def test_report_images_decode_in_a_headless_browser(compare_run, tmp_path):
    import json
    import re

    browser = _browser()
    if browser is None:
        pytest.skip("no chromium on PATH (make tools installs Debian's chromium)")
    _, out, _ = compare_run
    assert main(["report", str(out)]) == 0
    probe = tmp_path / "probe.html"
    probe.write_text((out / "report" / "index.html").read_text().replace("</body>", _PROBE + "</body>"))
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path}",
               "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    found = re.search(r'<pre id="ftflow-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"{browser} rendered no probe (exit {result.returncode}): {result.stderr[-500:]}"
    images = {i["alt"]: i for i in json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))}
    assert set(images) == FIGURES
    for alt, image in images.items():  # decoded by the browser, at a size a person can read
        assert image["complete"] and image["width"] >= 300 and image["height"] >= 200, (alt, image)


def test_report_of_a_run_without_comparison_says_what_is_missing(tmp_path, tiny_cfg_dict):
    from flow.config import config_from_dict
    from flow.steps import run

    tiny_cfg_dict["report"] = {"title": "Tiny run"}
    run(config_from_dict(tiny_cfg_dict, "tiny"), tmp_path, ["load", "estimate"])
    assert main(["report", str(tmp_path)]) == 0
    path = tmp_path / "report" / "index.html"
    page = _page(path)
    assert page.images == {}  # no ranking, no comparison: no figures, and the page says why
    text = path.read_text()
    assert "No comparison table in this run directory" in text and "ftflow compare" in text
    assert any("estimate (analytic)" in c for c in page.captions) and "board utilisation" in page.captions
    assert "<title>Tiny run</title>" in text  # report.title from the run's config


def test_report_of_a_missing_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "run directory not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.csim
def test_export_leaves_projects_whose_csim_still_compiles(compare_run, tmp_path):
    _, out, _ = compare_run
    assert main(["export", str(out), "--variant", "selective_min_0.3", "--dest", str(tmp_path)]) == 0
    project = tmp_path / "selective_min_0.3"
    assert not list(project.rglob("*.so")) and not list(project.rglob("*.o"))  # no build products copied
    assert (project / "firmware" / "nnet_utils" / "nnet_correction.h").is_file()
    tcl = (project / "project.tcl").read_text()
    assert 'set part "xc7z020clg400-1"' in tcl and "set clock_period 10.0" in tcl  # pynq-z2, the default board
    assert "build_prj.tcl" in (project / "EXPORT.md").read_text()
    shutil.move(str(out / "compare"), str(tmp_path / "moved"))  # the copy must not need the run directory
    try:
        result = subprocess.run(["bash", "build_lib.sh"], cwd=project, capture_output=True, text=True, check=False)
    finally:
        shutil.move(str(tmp_path / "moved"), str(out / "compare"))
    assert result.returncode == 0, result.stderr[-500:]
    assert list((project / "firmware").glob("myproject-*.so"))


def test_export_unknown_variant_lists_the_available_ones(tmp_path, tiny_cfg):
    from flow.export import export_projects

    with pytest.raises(FlowError, match="no converted hls4ml project"):
        export_projects(tmp_path)
    run_dir = tmp_path / "run"
    from flow.steps import run

    run(tiny_cfg, run_dir, ["load", "convert"])
    with pytest.raises(FlowError, match=r"no variant 'tmr'.*available: run"):
        export_projects(run_dir, ["tmr"])
