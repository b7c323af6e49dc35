"""`make demo`'s promise: the table it prints is the truth of the recordings it made."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from supervisor.protocol.rois import load_rois
from tests import browser
from tests.fakes import REPO, cli, cli_env
from workers.demo_tree import DEMO_CAMERAS, demo_actors
from workers.scenes import expected_counts, expected_intervals, load_sprites


def test_the_demo_table_matches_who_stood_where(tmp_path):
    if not (REPO / "models" / "person.pt").is_file():
        pytest.fail("models/person.pt is missing: `make test` fetches it")
    proc = subprocess.run(cli("demo", "--dir", str(tmp_path)), capture_output=True, text=True, env=cli_env(),
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout[proc.stdout.index("camera      region"):].splitlines()[1:]
    got = {(f[0], f[1]): (int(f[2]), float(f[3]), float(f[4]), int(f[5]))
           for f in (line.split() for line in table) if len(f) == 6}
    sprites = load_sprites()
    for c, camera in enumerate(DEMO_CAMERAS):
        regions = load_rois(tmp_path / "rois.toml").regions_for(camera)
        for region in regions:
            occupied = person = 0.0
            peak = 0
            for i in range(2):
                actors = demo_actors(c * 2 + i)
                occupied += sum(e - s for s, e in expected_intervals(actors, region, seconds=7, fps=10,
                                                                     sprites=sprites))
                counts = [expected_counts(actors, [region], k / 10, sprites)[0] for k in range(70)]
                person += sum(counts) / 10
                peak = max(peak, *counts)
            videos, got_occupied, got_person, got_peak = got[(camera, region.name)]
            assert videos == 2 and got_peak == peak, (camera, region.name)
            # Two recordings, each interval within one sample period (0.5 s) at either end.
            assert abs(got_occupied - occupied) <= 2 * 2 * 0.5 + 1e-6, (camera, region.name, got_occupied, occupied)
            assert abs(got_person - person) <= 2 * 2 * 0.5 + 1e-6, (camera, region.name, got_person, person)
    # It ends by saying where its HTML report is: a page in the browser with the same people.
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("report:")]
    page_file = Path(line.split()[1])
    assert page_file == tmp_path / "report.html" and page_file.is_file()
    page = browser.open_page(page_file.as_uri(), tmp_path / "report.png", offline=True)
    assert page.errors == [] and browser.chart_pixels(page.screenshot) > 2000
    shown = {(r[0], r[1]): float(r[3]) * 3600 for r in browser.tables(page.dom)[("", "", "summary")]}
    for key, (_, _, got_person, _) in got.items():
        assert abs(shown[key] - got_person) < 0.01, key
