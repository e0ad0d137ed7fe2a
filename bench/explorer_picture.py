"""Make docs/explorer.png: the explorer GeoPackage of the sample rides as QGIS draws it,
over the build's heat GeoTIFF (each layer with the style geoheat stored for it).

    python bench/explorer_picture.py [--data gpx] [--explorer-zoom 16]

The build runs here; QGIS (Debian's python3-qgis, on /usr/bin/python3) draws the map
offscreen. Nothing is fetched.
"""

import argparse
import tempfile
from pathlib import Path

import geoheat

from pictures import draw_in_qgis  # bench/pictures.py

ROOT = Path(__file__).resolve().parents[1]
DRAW = """
import os, sys
from qgis.core import (QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings,
                       QgsRasterLayer, QgsRectangle, QgsVectorLayer)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor
heat_path, gpkg, out, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = QgsApplication([], False)
app.initQgis()
heat = QgsRasterLayer(heat_path, "heat")  # styled by its .qml beside it
layers = [QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
          for name in ("max_square", "max_cluster", "tiles")]
settings = QgsMapSettings()
settings.setLayers(layers + [heat])
settings.setDestinationCrs(heat.crs())
extent = layers[1].extent() if layers[1].featureCount() else layers[2].extent()
extent.scale(1.6)
side = max(extent.width(), extent.height())
centre = extent.center()
settings.setExtent(QgsRectangle(centre.x() - side / 2, centre.y() - side / 2,
                                centre.x() + side / 2, centre.y() + side / 2))
settings.setOutputSize(QSize(size, size))
settings.setBackgroundColor(QColor(20, 20, 20))
job = QgsMapRendererSequentialJob(settings)
job.start()
job.waitForFinished()
job.renderedImage().save(out, "PNG")
print(out, flush=True)
os._exit(0)  # QGIS 3.22 may crash tearing itself down
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "gpx")
    parser.add_argument("--zoom", type=int, default=15)
    parser.add_argument("--explorer-zoom", type=int, default=16)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "explorer.png")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="geoheat-explorer-"))
    result = geoheat.build([args.data], folder / "heat.tif", zoom=args.zoom,
                           explorer=folder / "explorer.gpkg", explorer_zoom=args.explorer_zoom,
                           privacy="auto")
    draw_in_qgis(DRAW, args.out, folder / "heat.tif", folder / "explorer.gpkg", args.out,
                 args.size)
    found = result.explorer
    print(f"{args.out}: {found['tiles']} tiles at zoom {found['zoom']}, max square "
          f"{found['max_square']}, max cluster {found['max_cluster']}")


if __name__ == "__main__":
    main()
