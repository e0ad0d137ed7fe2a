"""Run geoheat's QGIS plugin in a headless QGIS (tests/test_qgis_plugin.py runs this
with the system Python that has Debian's python3-qgis; the venv's cannot import qgis).

    python3 qgis_headless.py PLUGINS_DIR CASES.json RESULTS.json

Loads PLUGINS_DIR/geoheat_qgis as QGIS would (classFactory(None), initProcessing),
runs each case's processing.run("geoheat:build", params) and writes what came of it.
A case: {"name", "params", "cancel": bool, "load": bool, "setting": command or null}.
"""

import hashlib
import json
import os
import sys
from pathlib import Path


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if os.path.isfile(path) else None


def session_members(sid):
    """Processes still alive in the session the geoheat command was started in."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) == sid:
                alive.append(int(entry.name))
    return alive


def main(plugins, cases_file, results_file):
    from qgis.core import QgsApplication, QgsProcessingFeedback, QgsProject, QgsRasterLayer

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    import processing
    from processing.core.Processing import Processing
    from processing.core.ProcessingConfig import ProcessingConfig

    Processing.initialize()
    sys.path.insert(0, plugins)
    import geoheat_qgis
    from geoheat_qgis import command

    plugin = geoheat_qgis.classFactory(None)
    plugin.initProcessing()
    registry = QgsApplication.processingRegistry()
    algorithm = registry.algorithmById("geoheat:build")
    started = []
    real_start = command.start

    def start(args):
        process = real_start(args)
        started.append(process.pid)
        return process

    command.start = start

    class Feedback(QgsProcessingFeedback):
        def __init__(self, cancel):
            super().__init__()
            self.cancel_at_progress = cancel
            self.seen = {"info": [], "warning": [], "progress": [], "command": []}

        def pushInfo(self, text):  # noqa: N802
            self.seen["info"].append(text)

        def pushWarning(self, text):  # noqa: N802
            self.seen["warning"].append(text)

        def pushCommandInfo(self, text):  # noqa: N802
            self.seen["command"].append(text)

        def setProgressText(self, text):  # noqa: N802
            self.seen["progress"].append(text)
            if self.cancel_at_progress:
                self.cancel()

    results = {"provider": registry.providerById("geoheat") is not None,
               "parameters": [p.name() for p in algorithm.parameterDefinitions()],
               "outputs": [o.name() for o in algorithm.outputDefinitions()],
               "cases": {}}
    for case in json.loads(Path(cases_file).read_text()):
        ProcessingConfig.setSettingValue("GEOHEAT_COMMAND", case.get("setting") or "")
        output = case["params"]["OUTPUT"]
        before = sha256(output)
        feedback = Feedback(case.get("cancel", False))
        started.clear()
        outcome = {"before": before}
        try:
            if case.get("load"):
                QgsProject.instance().clear()
                done = processing.runAndLoadResults("geoheat:build", case["params"],
                                                    feedback=feedback)
                layers = list(QgsProject.instance().mapLayers().values())
                outcome["loaded"] = [(layer.source(), layer.renderer().type())
                                     for layer in layers]
            else:
                done = processing.run("geoheat:build", case["params"], feedback=feedback)
            outcome["results"] = {k: v for k, v in done.items()}
            layer = QgsRasterLayer(done["OUTPUT"], "heat")
            outcome["layer"] = {"valid": layer.isValid(), "crs": layer.crs().authid(),
                                "renderer": layer.renderer().type() if layer.renderer() else None,
                                "width": layer.width(), "height": layer.height()}
        except Exception as err:  # noqa: BLE001 - what the user would see
            outcome["error"] = f"{type(err).__name__}: {err}"
        outcome["after"] = sha256(output)
        outcome["canceled"] = feedback.isCanceled()
        outcome["left_running"] = [p for pid in started for p in session_members(pid)]
        outcome["seen"] = feedback.seen
        results["cases"][case["name"]] = outcome
    plugin.unload()
    results["unloaded"] = registry.providerById("geoheat") is None
    Path(results_file).write_text(json.dumps(results, indent=1))
    app.exitQgis()


if __name__ == "__main__":
    main(*sys.argv[1:4])
    sys.stdout.flush()
    # PyQt's teardown at interpreter exit crashes after exitQgis (a segfault in a
    # headless QGIS 3.22, with or without the plugin): end here, the work is done.
    os._exit(0)
