"""The plugin object: it only registers the Processing provider (a Processing-only
plugin: initProcessing does the work, so it also runs headless, with iface None)."""

from qgis.core import QgsApplication


class GeoheatPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 - QGIS's name
        from .provider import GeoheatProvider

        if self.provider is None:
            self.provider = GeoheatProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS's name
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
