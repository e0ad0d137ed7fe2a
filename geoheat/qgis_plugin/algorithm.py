"""The algorithm geoheat:build: `geoheat build` run with the dialog's parameters."""

import os
import queue
import shutil
import tempfile
import threading

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingLayerPostProcessorInterface,
                       QgsProcessingOutputNumber, QgsProcessingParameterEnum,
                       QgsProcessingParameterFileDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterString)

from . import command
from .provider import command_setting

POLL_SECONDS = 0.1  # how often Cancel is looked at while the build runs


class LoadStyle(QgsProcessingLayerPostProcessorInterface):
    """Gives the loaded GeoTIFF the style geoheat wrote beside it (its .qml: the heat's
    colour ramp with the passes each colour stands for)."""

    def __init__(self, qml):
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS's name
        if os.path.isfile(self.qml):
            layer.loadNamedStyle(self.qml)
            layer.triggerRepaint()


class BuildAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    ZOOM = "ZOOM"
    SIGMA = "SIGMA"
    TYPES = "TYPES"
    YEARS = "YEARS"
    STYLE = "STYLE"
    NORMALIZE = "NORMALIZE"
    BASEMAP = "BASEMAP"
    MBTILES = "MBTILES"
    PMTILES = "PMTILES"
    OUTPUT = "OUTPUT"

    # Post-processors must outlive processAlgorithm (QGIS keeps no Python reference).
    _post_processors = []

    def name(self):
        return "build"

    def displayName(self):  # noqa: N802 - QGIS's name
        return "Build heatmap"

    def group(self):
        return ""

    def groupId(self):  # noqa: N802 - QGIS's name
        return ""

    def shortHelpString(self):  # noqa: N802 - QGIS's name
        return ("Runs <code>geoheat build</code>: a heatmap of GPS tracks (GPX, FIT, TCX, "
                "plain or gzipped; a Strava export zip or its folder) as a GeoTIFF in "
                "EPSG:3857 with its QGIS style, and optionally MBTiles and PMTiles.<br>"
                "Zoom <i>auto</i> takes the largest zoom that fits 4096 pixels. Types and "
                "years keep those activities (Ride,Run; 2023,2024). A basemap also writes a "
                "PNG of the heat over it beside the GeoTIFF.<br>The geoheat command is "
                "found on PATH, or set in Settings &gt; Options &gt; Processing &gt; "
                "Providers &gt; geoheat.")

    def createInstance(self):  # noqa: N802 - QGIS's name
        return BuildAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, "Activity files, folders or Strava export zips", QgsProcessing.TypeFile))
        zoom = QgsProcessingParameterEnum(self.ZOOM, "Zoom level", options=command.ZOOMS,
                                          defaultValue="auto")
        zoom.setUsesStaticStrings(True)
        self.addParameter(zoom)
        self.addParameter(QgsProcessingParameterNumber(
            self.SIGMA, "Blur (Gaussian sigma, pixels)", QgsProcessingParameterNumber.Double,
            defaultValue=1.0, minValue=0.0, maxValue=50.0))
        self.addParameter(QgsProcessingParameterString(
            self.TYPES, "Activity types (e.g. Ride,Run; empty: all)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.YEARS, "Years (e.g. 2023,2024; empty: all)", optional=True))
        for name, title, options, default in (
                (self.STYLE, "Style", command.styles(), command.styles()[0]),
                (self.NORMALIZE, "Normalize", command.NORMALIZES, "global"),
                (self.BASEMAP, "Basemap of a PNG beside the GeoTIFF (none: no PNG)",
                 command.BASEMAPS, "none")):
            choice = QgsProcessingParameterEnum(name, title, options=options,
                                                defaultValue=default)
            choice.setUsesStaticStrings(True)
            self.addParameter(choice)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.MBTILES, "MBTiles", "MBTiles (*.mbtiles)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.PMTILES, "PMTiles", "PMTiles (*.pmtiles)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Heat GeoTIFF"))
        self.addOutput(QgsProcessingOutputNumber("DRAWN", "Activities drawn"))
        self.addOutput(QgsProcessingOutputNumber("ZOOM_USED", "Zoom level used"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        inputs = self.parameterAsFileList(parameters, self.INPUT, context)
        if not inputs:
            raise QgsProcessingException("no input: give activity files, folders or a "
                                         "Strava export")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not output.lower().endswith((".tif", ".tiff")):
            output += ".tif"
        mbtiles = self.parameterAsFileOutput(parameters, self.MBTILES, context)
        pmtiles = self.parameterAsFileOutput(parameters, self.PMTILES, context)
        try:
            geoheat = command.find_geoheat(command_setting())
        except LookupError as err:
            raise QgsProcessingException(str(err)) from None
        folder = tempfile.mkdtemp(prefix="geoheat-qgis-")
        try:
            report = os.path.join(folder, "report.json")
            args = command.build_command(
                geoheat, inputs, output, report,
                zoom=self.parameterAsEnumString(parameters, self.ZOOM, context) or "auto",
                sigma=self.parameterAsDouble(parameters, self.SIGMA, context),
                types=self.parameterAsString(parameters, self.TYPES, context),
                years=self.parameterAsString(parameters, self.YEARS, context),
                style=self.parameterAsEnumString(parameters, self.STYLE, context),
                normalize=self.parameterAsEnumString(parameters, self.NORMALIZE, context),
                basemap=self.parameterAsEnumString(parameters, self.BASEMAP, context),
                mbtiles=mbtiles, pmtiles=pmtiles)
            feedback.pushCommandInfo(" ".join(args))
            code, lines = self._run(args, feedback)
            if feedback.isCanceled():
                raise QgsProcessingException("canceled: the build stopped; outputs of an "
                                             "earlier build are as they were")
            if code != 0:
                raise QgsProcessingException(command.failure(lines, code))
            done = command.read_report(report)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        qml = os.path.splitext(output)[0] + ".qml"
        if context.willLoadLayerOnCompletion(output):
            post = LoadStyle(qml)
            self._post_processors.append(post)
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(post)
        results = {self.OUTPUT: output, "DRAWN": done["activities"]["drawn"],
                   "ZOOM_USED": done["zoom"]}
        written = set(done.get("outputs", []))
        for name, path in ((self.MBTILES, mbtiles), (self.PMTILES, pmtiles)):
            if path and path in written:
                results[name] = path
        return results

    def _run(self, args, feedback):
        """The command run to its end, its lines turned into feedback as they come;
        Cancel interrupts it. Its exit code and lines."""
        try:
            process = command.start(args)
        except OSError as err:
            raise QgsProcessingException(f"cannot run {args[0]}: {err}") from None
        lines = queue.Queue()

        def read():
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        seen, warn = [], getattr(feedback, "pushWarning", feedback.reportError)
        while True:
            if feedback.isCanceled():
                command.interrupt(process)
            try:
                line = lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            kind, value = command.read_line(line)
            if kind == "progress":
                label, done, total = value
                feedback.setProgressText(label)
                feedback.setProgress(command.percent(done, total))
            elif kind == "warning":
                warn(value)
            elif kind == "info":
                feedback.pushInfo(value)
        reader.join()
        process.stdout.close()
        return process.wait(), seen
