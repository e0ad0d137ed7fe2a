"""Finding activity files: every Strava export layout, recursive folders, odd entries,
zips (cut short, damaged, nested, a name held twice). Reading their bytes, bounded:
test_source_bytes; activities.csv alone: test_export_index.

Each test builds the shape a real export or folder had, in tmp_path.
"""

import gzip
import io
import os
import zipfile
from datetime import datetime, timezone

import numpy as np
import pytest

from geoheat import InputError
from geoheat import sources as sources_module
from geoheat.reading import parse_file
from geoheat.samples import gpx_document
from geoheat.source_bytes import Source, read_source
from geoheat.sources import find_sources

from .conftest import shared_folder

TRACK = np.array([(14.50 + 0.0005 * i, 46.05 + 0.0002 * i) for i in range(30)])
GPX = gpx_document([TRACK]).encode()

OLD_HEADER = "id,date,name,type,description,elapsed_time,distance,commute,gear,filename"
# The current layout: capitalised names, some of them twice (Strava appends the
# detailed columns after the summary ones).
NEW_HEADER = ("Activity ID,Activity Date,Activity Name,Activity Type,Activity Description,"
              "Elapsed Time,Distance,Max Heart Rate,Relative Effort,Commute,"
              "Activity Private Note,Activity Gear,Filename,Athlete Weight,Bike Weight,"
              "Elapsed Time,Moving Time,Distance,Max Speed")


def old_row(ident, date, kind, filename, description=""):
    return f'{ident},{date},Morning {kind},{kind},"{description}",1800,5000,false,,{filename}'


def new_row(ident, date, kind, filename, description=""):
    return (f'{ident},"{date}",Morning,{kind},"{description}",1800,5.0,150,20,false,,'
            f',{filename},70,9,1800,1700,5000.0,8.1')


def write_export(folder, header, rows, files, encoding="utf-8"):
    """An unpacked export: activities.csv and the activity files (gzipped if so named)."""
    (folder / "activities").mkdir(parents=True, exist_ok=True)
    (folder / "activities.csv").write_bytes("\n".join([header, *rows, ""]).encode(encoding))
    for name in files:
        data = gzip.compress(GPX) if name.endswith(".gz") else GPX
        (folder / name).write_bytes(data)
    return folder


def zip_folder(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return zip_path


def both(tmp_path, header, rows, files, encoding="utf-8"):
    """The export as an unpacked folder and as a zip."""
    folder = write_export(tmp_path / "export", header, rows, files, encoding)
    return [folder, zip_folder(folder, tmp_path / "export.zip")]


def names(sources):
    """The sources to read, by name below activities/."""
    return [(s.member or s.path.as_posix()).rsplit("activities/", 1)[-1] for s in sources
            if s.unread is None]


def unread(sources):
    """The files found but not to be read: {name below the export: why}."""
    return {(s.member or s.path.as_posix()).rsplit("export/", 1)[-1]: s.unread
            for s in sources if s.unread is not None}


def test_old_lowercase_export_is_read_through_its_index(tmp_path):
    rows = [old_row(1, "2018-06-08 18:28:52", "Ride", "activities/1.gpx"),
            old_row(2, "2017-01-02 07:00:00", "Run", "activities/2.gpx.gz"),
            old_row(3, "2017-01-03 07:00:00", "Workout", "")]  # a manual entry, no file
    for export in both(tmp_path, OLD_HEADER, rows, ["activities/1.gpx", "activities/2.gpx.gz",
                                                   "activities/99.gpx"]):
        sources = find_sources([export])
        assert names(sources) == ["1.gpx", "2.gpx.gz"], export  # 99 is not listed
        assert unread(sources) == {"activities/99.gpx": sources_module.NOT_LISTED}
        assert [s.activity_type for s in sources if not s.unread] == ["Ride", "Run"]
        assert sources[0].date == datetime(2018, 6, 8, 18, 28, 52, tzinfo=timezone.utc)


def test_current_export_with_repeated_columns_and_other_case(tmp_path):
    rows = [new_row(11, "Feb 17, 2019, 6:26:44 AM", "Ride", "activities/11.GPX.gz"),
            new_row(12, "17 Feb 2019, 18:26:44", "Run", "activities/12.gpx")]
    # The files as a user has them: lower case, and 12 gzipped though listed plain.
    for export in both(tmp_path, NEW_HEADER, rows, ["activities/11.gpx.gz",
                                                   "activities/12.gpx.gz"]):
        sources = find_sources([export])
        assert names(sources) == ["11.gpx.gz", "12.gpx.gz"], export
        assert [s.date.hour for s in sources] == [6, 18]
        assert [s.activity_type for s in sources] == ["Ride", "Run"]


def test_localised_header_and_dates_are_read_by_their_values(tmp_path):
    header = ("Aktivitäts-ID,Datum der Aktivität,Name der Aktivität,Aktivitätsart,"
              "Beschreibung,Dateiname")
    rows = ['21,"17.02.2019, 06:26:44",Lauf,Run,,activities/21.gpx',
            '22,"3 mai 2024 à 07:00:00",Tour,Ride,,activities/22.gpx']
    warnings = []
    sources = find_sources([write_export(tmp_path, header, rows,
                                         ["activities/21.gpx", "activities/22.gpx"])],
                           on_warning=warnings.append)
    assert names(sources) == ["21.gpx", "22.gpx"] and not warnings
    assert [s.activity_type for s in sources] == ["Run", "Ride"]
    assert [s.date.date().isoformat() for s in sources] == ["2019-02-17", "2024-05-03"]


def test_latin1_index_and_a_huge_description_are_read(tmp_path):
    long_text = "x" * 200_000  # over csv's 128 KB field limit
    rows = [new_row(31, "Feb 17, 2019, 6:26:44 AM", "Ride", "activities/31.gpx", "Café"),
            new_row(32, "Feb 18, 2019, 6:26:44 AM", "Run", "activities/32.gpx", long_text)]
    for export in both(tmp_path, NEW_HEADER, rows, ["activities/31.gpx", "activities/32.gpx"],
                       encoding="latin-1"):
        warnings = []
        sources = find_sources([export], on_warning=warnings.append)
        assert names(sources) == ["31.gpx", "32.gpx"] and not warnings, export
        assert [s.activity_type for s in sources] == ["Ride", "Run"]


@pytest.mark.parametrize("index", [
    "who,what\n1,2\n",  # a header geoheat does not know, no file names in it
    "\x00\x01garbage",
    'id,filename\n1,"never closed\n',
])
def test_an_index_not_understood_falls_back_to_every_file_with_one_warning(tmp_path, index):
    files = ["activities/1.gpx", "activities/2.gpx.gz", "activities/3.tcx.gz"]
    folder = write_export(tmp_path / "export", OLD_HEADER, [], files)
    (folder / "activities.csv").write_text(index)
    for export in (folder, zip_folder(folder, tmp_path / "export.zip")):
        warnings = []
        sources = find_sources([export], on_warning=warnings.append)
        assert names(sources) == ["1.gpx", "2.gpx.gz", "3.tcx.gz"], export
        assert len(warnings) == 1 and "activities.csv" in warnings[0]
        assert "reading every activity file" in warnings[0]


def test_an_index_listing_none_of_the_files_falls_back(tmp_path):
    rows = [old_row(1, "2018-06-08 18:28:52", "Ride", "activities/1.gpx")]
    warnings = []
    sources = find_sources([write_export(tmp_path, OLD_HEADER, rows, ["activities/7.gpx"])],
                           on_warning=warnings.append)
    assert names(sources) == ["7.gpx"] and len(warnings) == 1


def test_folders_are_searched_recursively_and_an_export_below_is_read_by_its_index(tmp_path):
    (tmp_path / "GPX_OUT").mkdir()
    (tmp_path / "GPX_OUT" / "a.gpx").write_bytes(GPX)
    (tmp_path / "GPX_OUT" / "deep" / "deeper").mkdir(parents=True)
    (tmp_path / "GPX_OUT" / "deep" / "deeper" / "b.GPX").write_bytes(GPX)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.gpx").write_bytes(GPX)
    (tmp_path / "GPX_OUT" / ".d.gpx").write_bytes(GPX)
    rows = [old_row(1, "2018-06-08 18:28:52", "Ride", "activities/1.gpx")]
    write_export(tmp_path / "strava", OLD_HEADER, rows, ["activities/1.gpx",
                                                        "activities/2.gpx"])
    sources = find_sources([tmp_path])
    relative = [s.path.relative_to(tmp_path).as_posix() for s in sources]
    assert relative == ["GPX_OUT/a.gpx", "GPX_OUT/deep/deeper/b.GPX", "strava/activities/1.gpx",
                        "strava/activities/2.gpx"]
    assert sources[2].activity_type == "Ride"  # through its activities.csv
    assert sources[3].unread == sources_module.NOT_LISTED  # found, not read, and said
    assert [s.path.name for s in find_sources([tmp_path], "b.*")] == ["b.GPX"]
    assert [s.path.name for s in find_sources([tmp_path], "GPX_OUT/*")] == ["a.gpx", "b.GPX"]


def test_garmin_tree_parent_finds_both_sub_folders():
    sources = find_sources([shared_folder("garmin-tree")])
    assert len(sources) == 73
    assert {s.path.parent.name for s in sources} == {"GPX_OUT", "FIT_OUT"}


def test_fifos_and_broken_links_are_listed_and_fail_with_a_reason(tmp_path):
    (tmp_path / "good.gpx").write_bytes(GPX)
    os.mkfifo(tmp_path / "pipe.gpx")
    os.symlink(tmp_path / "gone.gpx", tmp_path / "link.gpx")
    sources = find_sources([tmp_path])
    assert [s.path.name for s in sources] == ["good.gpx", "link.gpx", "pipe.gpx"]
    errors = {s.path.name: parse_file(s).error for s in sources}  # a FIFO opened would block
    assert errors["good.gpx"] is None
    assert "a broken link" in errors["link.gpx"]
    assert "not a regular file (a FIFO)" in errors["pipe.gpx"]
    assert "a FIFO" in parse_file(find_sources([tmp_path / "pipe.gpx"])[0]).error


def test_missing_input_and_nothing_matching_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        find_sources([tmp_path / "missing"])
    (tmp_path / "a.gpx").write_bytes(GPX)
    with pytest.raises(InputError, match="no file matches"):
        find_sources([tmp_path], "*.fit")


class Unseekable:
    """A write-only stream: zipfile then writes each member's sizes after its data (a
    'data descriptor'), as streaming zip writers (and Strava's exports) do."""

    def __init__(self):
        self.data = bytearray()

    def write(self, b):
        self.data += b
        return len(b)

    def flush(self):
        pass


def export_zip_bytes(streamed):
    big = gpx_document([np.array([(14.5 + i * 1e-4, 46 + i * 1e-4) for i in range(2000)])])
    target = Unseekable() if streamed else io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/activities.csv", "\n".join(
            [OLD_HEADER, old_row(1, "2018-06-08 18:28:52", "Ride", "activities/1.gpx"),
             old_row(2, "2018-06-09 18:28:52", "Run", "activities/2.gpx.gz"),
             old_row(3, "2018-06-10 18:28:52", "Walk", "activities/3.gpx")]))
        archive.writestr("export/activities/1.gpx", big)
        archive.writestr("export/activities/2.gpx.gz", gzip.compress(big.encode()))
        archive.writestr("export/activities/3.gpx", big)
    return bytes(target.data if streamed else target.getvalue())


@pytest.mark.parametrize("streamed", [False, True])
def test_an_export_zip_cut_short_is_read_from_its_local_headers(tmp_path, streamed):
    data = export_zip_bytes(streamed)
    whole = tmp_path / "whole.zip"
    whole.write_bytes(data)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) - len(data) // 10])  # a download stopped at 90%
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(cut)
    warnings = []
    sources = find_sources([cut], on_warning=warnings.append)
    assert len(warnings) == 1 and "cut short" in warnings[0]
    assert [s.member for s in sources] == [f"export/activities/{n}" for n in
                                           ("1.gpx", "2.gpx.gz", "3.gpx")]
    assert [s.activity_type for s in sources] == ["Ride", "Run", "Walk"]  # its index read
    parsed = [parse_file(s) for s in sources]
    assert [p.points for p in parsed[:2]] == [2000, 2000] and parsed[0].note is None
    assert 0 < parsed[2].points < 2000 and "broken off" in parsed[2].note  # the cut member
    for source in sources[:2]:  # the same bytes as from the whole zip
        assert read_source(source) == read_source(Source(whole, source.member))


def test_a_damaged_zip_among_inputs_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "a.gpx").write_bytes(GPX)
    broken = tmp_path / "export.zip"
    broken.write_bytes(b"PK\x05\x06" + bytes(10))  # no member, no directory
    warnings = []
    sources = find_sources([tmp_path / "a.gpx", broken], on_warning=warnings.append)
    assert [s.path.name for s in sources] == ["a.gpx"]
    assert len(warnings) == 1 and "not a readable zip file" in warnings[0]
    with pytest.raises(InputError, match="export.zip: not a readable zip file"):
        find_sources([broken])


def test_an_export_saved_without_zip_in_its_name_is_read_as_one(tmp_path):
    rows = [old_row(1, "2018-06-08 18:28:52", "Ride", "activities/1.gpx")]
    folder = write_export(tmp_path / "x", OLD_HEADER, rows, ["activities/1.gpx"])
    export = zip_folder(folder, tmp_path / "export_12345")
    assert [(s.member, s.activity_type) for s in find_sources([export])] == [
        ("activities/1.gpx", "Ride")]


# --- what is not read is named (issues 21 and 28) ------------------------------------

def test_listed_files_the_export_lacks_are_each_named(tmp_path):
    rows = [old_row(i, "2018-06-08 18:28:52", "Ride", f"activities/{i}.gpx") for i in range(1, 6)]
    for export in both(tmp_path, OLD_HEADER, rows, ["activities/1.gpx", "activities/2.gpx"]):
        warnings = []
        sources = find_sources([export], on_warning=warnings.append)
        assert names(sources) == ["1.gpx", "2.gpx"], export
        assert unread(sources) == {f"activities/{i}.gpx": sources_module.NOT_IN_EXPORT
                                   for i in (3, 4, 5)}
        assert not warnings  # the build names them, as skipped files (test_exports)
        missing = [s for s in sources if s.unread]
        assert all(s.activity_type == "Ride" for s in missing)  # what the index says
        for source in missing:
            parsed = parse_file(source)
            assert parsed.error == f"{source.name}: {sources_module.NOT_IN_EXPORT}"


@pytest.mark.parametrize("written", ["./activities/{}.gpx", "activities//{}.gpx",
                                     "/activities/{}.gpx", "activities/./{}.gpx",
                                     "activities\\{}.gpx"])
def test_listed_names_with_dot_slashes_or_double_slashes_are_found(tmp_path, written):
    rows = [old_row(i, "2018-06-08 18:28:52", "Ride", written.format(i)) for i in (1, 2)]
    for export in both(tmp_path, OLD_HEADER, rows, ["activities/1.gpx", "activities/2.gpx"]):
        sources = find_sources([export])
        assert names(sources) == ["1.gpx", "2.gpx"] and not unread(sources), export
        assert [s.activity_type for s in sources] == ["Ride", "Ride"]


@pytest.mark.parametrize("date", ["1970-01-01 00:00:00", "9999-12-31 23:59:59",
                                  "\"Jan 1, 1970, 12:00:00 AM\""])
def test_an_implausible_index_date_gives_way_to_the_files_own(tmp_path, date):
    from geoheat.samples import gpx_document

    own = datetime(2023, 6, 1, 7, 0, tzinfo=timezone.utc)
    folder = tmp_path / "export"
    (folder / "activities").mkdir(parents=True)
    (folder / "activities.csv").write_text(
        "\n".join([OLD_HEADER, old_row(1, date, "Ride", "activities/1.gpx"), ""]))
    (folder / "activities" / "1.gpx").write_text(gpx_document([TRACK], start=own))
    (source,) = find_sources([folder])
    assert source.date is None and source.activity_type == "Ride"
    import geoheat

    result = geoheat.build([folder], tmp_path / "h.tif", years=[2023], zoom=14, png=False)
    assert result.types == {"Ride": 1}  # drawn for 2023, its own year


@pytest.mark.parametrize("index", [
    OLD_HEADER + "\n",  # the header alone
    OLD_HEADER + "\n" + old_row(1, "2018-06-08 18:28:52", "Ride", ""),  # manual entries only
    "Activity ID,Activity Date,Activity Type,Filename,Filename\n"
    '1,"Feb 17, 2019, 6:26:44 AM",Ride,,\n',  # two Filename columns, both empty
])
def test_an_index_listing_no_file_reads_the_files_the_export_holds(tmp_path, index):
    files = ["activities/1.gpx", "activities/2.gpx.gz"]
    folder = write_export(tmp_path / "export", OLD_HEADER, [], files)
    (folder / "activities.csv").write_text(index)
    for export in (folder, zip_folder(folder, tmp_path / "export.zip")):
        warnings = []
        sources = find_sources([export], on_warning=warnings.append)
        assert names(sources) == ["1.gpx", "2.gpx.gz"], export
        assert len(warnings) == 1 and "lists no activity file" in warnings[0]
        assert "reading every activity file" in warnings[0]


def test_the_filled_one_of_two_filename_columns_is_read(tmp_path):
    index = ("Activity ID,Activity Date,Activity Type,Filename,Filename\n"
             '1,"Feb 17, 2019, 6:26:44 AM",Ride,,activities/1.gpx\n'
             '2,"Feb 18, 2019, 6:26:44 AM",Run,,activities/2.gpx.gz\n')
    folder = write_export(tmp_path / "export", OLD_HEADER, [],
                          ["activities/1.gpx", "activities/2.gpx.gz"])
    (folder / "activities.csv").write_text(index)
    sources = find_sources([folder])
    assert [s.activity_type for s in sources] == ["Ride", "Run"] and not unread(sources)


def test_export_zips_in_a_folder_are_read(tmp_path):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    for n in (1, 2):  # a parent folder of two exports, as downloaded
        rows = [old_row(n, "2018-06-08 18:28:52", "Run", f"activities/{n}.gpx")]
        folder = write_export(tmp_path / f"unpacked{n}", OLD_HEADER, rows, [f"activities/{n}.gpx"])
        zip_folder(folder, downloads / f"export_1234{n}.zip")
    with zipfile.ZipFile(downloads / "photos.zip", "w") as archive:
        archive.writestr("a.jpg", b"\xff\xd8\xff")  # no activity: not read, not named
    (downloads / "damaged.zip").write_bytes(b"PK\x05\x06" + bytes(10))
    warnings = []
    sources = find_sources([downloads], on_warning=warnings.append)
    assert [(s.path.name, s.member, s.activity_type) for s in sources if not s.unread] == [
        ("export_12341.zip", "activities/1.gpx", "Run"),
        ("export_12342.zip", "activities/2.gpx", "Run")]
    (damaged,) = [s for s in sources if s.unread]
    assert damaged.path.name == "damaged.zip" and damaged.member is None
    assert damaged.unread.startswith("not a readable zip file")
    assert not warnings


def test_a_folder_holding_only_an_export_zip_is_read(tmp_path):
    rows = [old_row(1, "2018-06-08 18:28:52", "Ride", "activities/1.gpx")]
    folder = write_export(tmp_path / "x", OLD_HEADER, rows, ["activities/1.gpx"])
    (tmp_path / "dl").mkdir()
    zip_folder(folder, tmp_path / "dl" / "export_12345.zip")  # was: "no file matches"
    (source,) = find_sources([tmp_path / "dl"])
    assert (source.member, source.activity_type) == ("activities/1.gpx", "Ride")
    assert parse_file(source).points == len(TRACK)


def test_a_fifo_named_zip_in_a_folder_is_named_not_opened(tmp_path):
    (tmp_path / "a.gpx").write_bytes(GPX)
    os.mkfifo(tmp_path / "export.zip")
    sources = find_sources([tmp_path])  # opening the FIFO would block for ever
    assert [(s.path.name, s.unread) for s in sources] == [
        ("a.gpx", None), ("export.zip", "a zip that cannot be read (a FIFO)")]


def test_two_members_of_one_name_are_both_read_and_named(tmp_path):
    other = gpx_document([TRACK + 0.01]).encode()
    path = tmp_path / "twice.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("activities/a.gpx", GPX)
            archive.writestr("activities/a.gpx", other)
            archive.writestr("activities/b.gpx", GPX)
    warnings = []
    sources = find_sources([path], on_warning=warnings.append)
    assert [(s.member, s.copy) for s in sources] == [
        ("activities/a.gpx", 0), ("activities/a.gpx", 1), ("activities/b.gpx", None)]
    assert warnings == [f"{path}: 1 name is held by more than one member (activities/a.gpx); "
                        "reading each"]
    assert [read_source(s) for s in sources] == [GPX, other, GPX]
    assert len({s.name for s in sources}) == 3
    assert sources[1].name == f"{path}:activities/a.gpx (copy 2 of that name)"


def test_two_members_of_one_name_have_their_own_cache_entries(tmp_path):
    from geoheat.reading import read_files

    other = gpx_document([TRACK + 0.01]).encode()
    path = tmp_path / "twice.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.gpx", GPX)
            archive.writestr("a.gpx", other)
    sources = find_sources([path])
    cold = read_files(sources, tmp_path / "cache")
    warm = read_files(sources, tmp_path / "cache")
    for parsed in (cold, warm):
        assert not np.array_equal(parsed[0].xy, parsed[1].xy)
        np.testing.assert_array_equal(parsed[1].xy, parse_file(sources[1]).xy)


def test_a_zip_inside_the_zip_is_named(tmp_path):
    rows = [old_row(1, "2018-06-08 18:28:52", "Ride", "activities/1.gpx")]
    inner = zip_folder(write_export(tmp_path / "x", OLD_HEADER, rows, ["activities/1.gpx"]),
                       tmp_path / "export_1.zip")
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.write(inner, "Downloads/export_1.zip")
    (source,) = find_sources([outer])  # was: "no file matches"
    assert source.member == "Downloads/export_1.zip"
    assert source.unread == sources_module.NESTED_ZIP
