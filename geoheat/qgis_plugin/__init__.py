"""geoheat's QGIS plugin: a Processing provider (id `geoheat`) whose algorithm
`geoheat:build` runs the `geoheat build` command.

These files are the plugin itself; `geoheat qgis-plugin DIR` copies them to
DIR/geoheat_qgis/ (or a zip for "Install from ZIP"). Nothing here imports QGIS until
QGIS calls classFactory, so the plain parts can be tested without it.
"""


def classFactory(iface):  # noqa: N802 - the name QGIS calls
    """The plugin object QGIS asks for; iface is None in a headless QGIS."""
    from .plugin import GeoheatPlugin

    return GeoheatPlugin(iface)
