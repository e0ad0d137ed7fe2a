"""Make docs/qgis-result.png: what `geoheat:build` gives in QGIS, drawn by QGIS itself.

    python bench/qgis_picture.py [--data gpx] [--zoom 14] [--style light]
                                 [--out docs/qgis-result.png]

The heat GeoTIFF of the sample rides, built by `geoheat build`, is loaded into QGIS
(Debian's python3-qgis, on /usr/bin/python3) as the plugin's algorithm loads it, styled
by the .qml beside it, and drawn offscreen with its layer legend (the "N passes" items
QGIS's layer panel lists) beside the map. Nothing is fetched.
"""

import argparse
import tempfile
from pathlib import Path

import geoheat

from pictures import draw_in_qgis  # bench/pictures.py

ROOT = Path(__file__).resolve().parents[1]
DRAW = """
import os, sys
from qgis.core import (QgsApplication, QgsLayerTree, QgsLayerTreeModel, QgsLegendRenderer,
                       QgsLegendSettings, QgsMapRendererSequentialJob, QgsMapSettings,
                       QgsProject, QgsRasterLayer, QgsRenderContext)
from qgis.PyQt.QtCore import QSize, QSizeF
from qgis.PyQt.QtGui import QColor, QImage, QPainter
heat_path, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = QgsApplication([], False)
app.initQgis()
heat = QgsRasterLayer(heat_path, "heat")  # styled by its .qml beside it
QgsProject.instance().addMapLayer(heat)
settings = QgsMapSettings()
settings.setLayers([heat])
settings.setDestinationCrs(heat.crs())
settings.setExtent(heat.extent())
settings.setOutputSize(QSize(size, size))
settings.setBackgroundColor(QColor(242, 239, 233))  # OpenStreetMap's land colour
job = QgsMapRendererSequentialJob(settings)
job.start()
job.waitForFinished()
picture = job.renderedImage()
root = QgsLayerTree()
root.addLayer(heat)
model = QgsLayerTreeModel(root)
legend = QgsLegendRenderer(model, QgsLegendSettings())
wanted = legend.minimumSize()
image = QImage(int(size + wanted.width() * 4 + 20), size, QImage.Format_ARGB32)
image.fill(QColor(255, 255, 255))
painter = QPainter(image)
painter.drawImage(0, 0, picture)
painter.translate(size + 10, 10)
painter.scale(4, 4)  # the legend's millimetres at about 100 dpi
context = QgsRenderContext.fromQPainter(painter)
legend.drawLegend(context)
painter.end()
image.save(out, "PNG")
nodes = model.layerLegendNodes(root.findLayer(heat.id()))
print(out, len(nodes), "legend items:", ", ".join(n.data(0) for n in nodes), flush=True)
os._exit(0)  # QGIS 3.22 may crash tearing itself down
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "gpx")
    parser.add_argument("--zoom", type=int, default=14)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--style", default="light", help="light suits QGIS's light canvas")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "qgis-result.png")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="geoheat-qgis-picture-"))
    result = geoheat.build([args.data], folder / "heat.tif", zoom=args.zoom, style=args.style)
    drawn = draw_in_qgis(DRAW, args.out, folder / "heat.tif", args.out, args.size)
    print(f"{drawn.strip()}; {args.data} at zoom {args.zoom}, style {args.style}, "
          f"{result.activities} activities")


if __name__ == "__main__":
    main()
