"""Generate configs/demo-grid.geojson: a synthetic demo grid of 36 cells (6 x 6) of about 800 m.

The grid covers about 4.8 km x 4.8 km (a district-sized area) centred near lat 30.27, lon 120.155
(central Hangzhou), where the demo camera of configs/site.yaml stands. Each column of cells belongs
to one street (街道) and its enforcement team; each cell is a community (社区) grid. Names are
illustrative only, not an official grid. Run: python configs/make_demo_grid.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

CENTRE_LAT, CENTRE_LON = 30.27, 120.155
CELL_M = 800.0
N = 6
STREETS = [  # (pinyin id, display name)
    ("hubin", "湖滨街道 Hubin"),
    ("xiaoying", "小营街道 Xiaoying"),
    ("qingbo", "清波街道 Qingbo"),
    ("ziyang", "紫阳街道 Ziyang"),
    ("wangjiang", "望江街道 Wangjiang"),
    ("nanxing", "南星街道 Nanxing"),
]


def build() -> dict:
    dlat = CELL_M / 111_320.0
    dlon = CELL_M / (111_320.0 * math.cos(math.radians(CENTRE_LAT)))
    south = CENTRE_LAT - dlat * N / 2
    west = CENTRE_LON - dlon * N / 2
    features = []
    for col, (street_id, street_name) in enumerate(STREETS):
        for row in range(N):
            x0, y0 = west + col * dlon, south + row * dlat
            ring = [[x0, y0], [x0 + dlon, y0], [x0 + dlon, y0 + dlat], [x0, y0 + dlat], [x0, y0]]
            ring = [[round(x, 6), round(y, 6)] for x, y in ring]
            cell_id = f"DEMO-{street_id.upper()}-{row + 1:02d}"
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {
                        "id": cell_id,
                        "name": f"{street_name} grid {row + 1:02d}",
                        "street": street_name,
                        "community": f"{street_name} community {row + 1}",
                        "team": f"team-{street_id}",
                    },
                }
            )
    return {
        "type": "FeatureCollection",
        "name": "gridpatrol demo grid (synthetic, illustrative names)",
        "features": features,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("demo-grid.geojson")
    out.write_text(json.dumps(build(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
