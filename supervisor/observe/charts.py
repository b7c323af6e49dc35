"""Charts for the HTML report and the daemon's page: a few dozen lines of script, inside the page itself.

Both pages must open with no network (a site's office PC, an air-gapped host), so
nothing is fetched: no chart library, font or style from elsewhere. The charts a
manager needs here are two, bars and a day x hour heatmap, so a small renderer on
<canvas> does the job; the numbers behind every chart are also in a table under it,
written by the server, so the page reads right even without script. The data rides
in the page as JSON (`<script type="application/json" id="chart-data">`): a year of
hourly data for 20 cameras is a few megabytes, drawn by the browser in well under a
second, and written by Python in a fraction of one.
"""

from __future__ import annotations

import json
from typing import Any

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}canvas{max-width:100%;display:block}
.muted{color:#777}.bad{color:#b00}.ok{color:#070}details{margin-bottom:1em}summary{cursor:pointer;color:#555}
"""

SCRIPT = r"""
(function(){
const data = JSON.parse(document.getElementById('chart-data').textContent);
function colour(v, max){ if(v===null) return '#eee'; const a = max>0 ? Math.min(1, v/max) : 0;
  const r = Math.round(255-a*(255-35)), g = Math.round(255-a*(255-95)), b = Math.round(255-a*(255-160));
  return 'rgb('+r+','+g+','+b+')'; }
function bars(c, s){ const x = c.getContext('2d'), W = c.width, H = c.height, L = 48, B = 22, n = s.values.length;
  const max = Math.max(1e-9, ...s.values.map(v => v||0)); x.font = '11px sans-serif'; x.fillStyle = '#555';
  x.fillText(s.unit+' (max '+(+max.toFixed(2))+')', L, 12);
  const w = (W-L-4)/Math.max(1,n);
  s.values.forEach((v,i) => { const h = (H-B-18)*((v||0)/max); x.fillStyle = '#2f6fa0';
    x.fillRect(L+i*w+1, H-B-h, Math.max(1,w-2), h);
    if(n<=31 || i % Math.ceil(n/24) === 0){ x.fillStyle = '#555'; x.fillText(s.labels[i], L+i*w, H-6); } });
  x.strokeStyle = '#999'; x.beginPath(); x.moveTo(L, 16); x.lineTo(L, H-B); x.lineTo(W, H-B); x.stroke(); }
function heatmap(c, s){ const rows = s.rows.length, L = 74, T = 16, rh = rows > 62 ? 3 : 10;
  c.height = T + Math.max(1, rows)*rh + 4; const x = c.getContext('2d'), cw = (c.width-L)/24;
  x.font = '10px sans-serif';
  const max = Math.max(1e-9, ...s.cells.flat().map(v => v||0));
  for(let h=0; h<24; h+=3){ x.fillStyle = '#555'; x.fillText(String(h).padStart(2,'0'), L+h*cw, 11); }
  s.rows.forEach((d,r) => { if(rows<=62 || r % 30 === 0){ x.fillStyle = '#555';
      x.fillText(d, 2, T+r*rh+(rh > 5 ? 9 : 8)); }
    for(let h=0; h<24; h++){ x.fillStyle = colour(s.cells[r][h], max);
      x.fillRect(L+h*cw, T+r*rh, cw-1, rh > 5 ? rh-1 : rh); } }); }
document.querySelectorAll('canvas[data-chart]').forEach(c => { const s = data[c.dataset.chart];
  if(!s) return; (s.kind === 'heatmap' ? heatmap : bars)(c, s); });
})();
"""


def page(title: str, body: str, charts: dict[str, Any], *, refresh: int = 0) -> str:
    """A whole page: the style, the body, the charts' data and the renderer, nothing from elsewhere."""
    from html import escape

    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    data = json.dumps(charts, separators=(",", ":")).replace("</", "<\\/")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
            f'<body>{body}<script type="application/json" id="chart-data">{data}</script>'
            f"<script>{SCRIPT}</script></body></html>\n")


def canvas(chart_id: str, height: int = 160) -> str:
    return f'<canvas data-chart="{chart_id}" width="1060" height="{height}"></canvas>'
