"""The Processing provider `geoheat`, with its one setting: the geoheat command."""

from qgis.core import QgsProcessingProvider

from .command import written_by

COMMAND_SETTING = "GEOHEAT_COMMAND"


def command_setting() -> str:
    """The geoheat command set in Settings > Options > Processing > Providers > geoheat
    ('' when not set, or outside a QGIS with Processing)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return ""
    return str(ProcessingConfig.getSetting(COMMAND_SETTING) or "")


class GeoheatProvider(QgsProcessingProvider):
    def id(self):
        return "geoheat"

    def name(self):
        return "geoheat"

    def longName(self):  # noqa: N802 - QGIS's name
        version = written_by().get("version")
        return f"geoheat {version}" if version else "geoheat"

    def load(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting
        except ImportError:  # a QGIS without the Processing plugin: PATH only
            pass
        else:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(
                self.name(), COMMAND_SETTING,
                "geoheat command (empty: geoheat on PATH, else the one that wrote the plugin)",
                "", valuetype=Setting.FILE))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
        except ImportError:
            return
        ProcessingConfig.removeSetting(COMMAND_SETTING)

    def loadAlgorithms(self):  # noqa: N802 - QGIS's name
        from .algorithm import BuildAlgorithm

        self.addAlgorithm(BuildAlgorithm())

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 - QGIS's name
        return ["tif"]
