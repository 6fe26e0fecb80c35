"""GPS tracks: GPX / NMEA / CSV files read from tmp_path, interpolation, gaps, alignment with frames."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from streams import Frame, GeoPoint, InputError
from streams.gps import Fix, GpsTrack, TrackError, load_track, with_track_positions

T0 = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def nmea(body: str) -> str:
    """A sentence with its correct *hh checksum (XOR of the characters between $ and *)."""
    value = 0
    for ch in body:
        value ^= ord(ch)
    return f"${body}*{value:02X}"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def close_to(point: GeoPoint | None, lat: float, lon: float) -> bool:
    return point is not None and abs(point.lat - lat) < 1e-9 and abs(point.lon - lon) < 1e-9


# --- GPX ---

GPX_11 = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="dashcam" xmlns="http://www.topografix.com/GPX/1/1"
     xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">
  <metadata><time>2026-11-20T00:59:00Z</time></metadata>
  <trk><name>patrol</name><trkseg>
    <trkpt lat="30.2500" lon="120.1400"><ele>8</ele><time>2026-11-20T01:00:00Z</time>
      <extensions><gpxtpx:TrackPointExtension><gpxtpx:speed>5.5</gpxtpx:speed>
      <gpxtpx:course>12.5</gpxtpx:course></gpxtpx:TrackPointExtension></extensions></trkpt>
    <trkpt lat="30.2510" lon="120.1420"><time>2026-11-20T09:00:10+08:00</time></trkpt>
    <trkpt lat="30.2600" lon="120.1500"></trkpt>
    <trkpt lat="30.2530" lon="120.1420"><time>2026-11-20T01:00:20.500Z</time></trkpt>
  </trkseg></trk>
</gpx>
"""


def test_gpx_11_with_namespaces_and_extensions(tmp_path: Path) -> None:
    track = load_track(write(tmp_path, "patrol.gpx", GPX_11))
    assert len(track) == 3 and track.skipped == {"without time": 1}  # the point without time
    assert (track.start, track.end) == (at(0), at(20.5))
    first = track.fixes[0]
    assert (first.lat, first.lon, first.speed_mps, first.heading_deg) == (30.25, 120.14, 5.5, 12.5)
    assert track.fixes[1].time == at(10)  # +08:00 converted to UTC
    # halfway between the first two fixes, a quarter of the way between the last two
    assert close_to(track.position_at(at(5)), 30.2505, 120.141)
    assert close_to(track.position_at(at(10) + timedelta(seconds=10.5 / 4)), 30.2515, 120.142)


def test_gpx_10_route_and_waypoints_with_time(tmp_path: Path) -> None:
    text = """<?xml version="1.0"?>
<gpx version="1.0" xmlns="http://www.topografix.com/GPX/1/0">
  <wpt lat="30.27" lon="120.16"><time>2026-11-20T01:00:30</time><name>stop</name></wpt>
  <rte><rtept lat="30.25" lon="120.15"><time>2026-11-20T01:00:00Z</time><speed>2.0</speed>
    <course>270</course></rtept>
  <rtept lat="30.26" lon="120.16"><time>2026-11-20T01:00:10Z</time></rtept></rte>
  <wpt lat="30.20" lon="120.10"><name>depot, no time</name></wpt>
</gpx>"""
    track = load_track(write(tmp_path, "route.gpx", text))
    assert [f.time for f in track] == [at(0), at(10), at(30)]  # sorted; a zone-less GPX time is UTC
    assert (track.fixes[0].speed_mps, track.fixes[0].heading_deg) == (2.0, 270.0)
    assert track.skipped == {"without time": 1}


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE gpx [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE gpx [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        '<!DOCTYPE gpx SYSTEM "http://example.invalid/gpx.dtd">',
        '<!doctype gpx SYSTEM "http://example.invalid/gpx.dtd">',
    ],
    ids=["xxe", "billion-laughs", "external-dtd", "lower-case"],
)
def test_gpx_with_doctype_or_entities_is_refused(tmp_path: Path, doctype: str) -> None:
    text = f'<?xml version="1.0"?>\n{doctype}\n<gpx><trk><trkseg><trkpt lat="30.25" lon="120.14">'
    text += "<time>2026-11-20T01:00:00Z</time><name>&xxe;&b;</name></trkpt></trkseg></trk></gpx>"
    path = write(tmp_path, "evil.gpx", text)
    with pytest.raises(TrackError, match=r"evil\.gpx: a DOCTYPE or ENTITY declaration is not allowed"):
        load_track(path)


@pytest.mark.parametrize(
    ("attributes", "time", "message"),
    [
        ('lat="123.4" lon="120.1"', "2026-11-20T01:00:05Z", "bad latitude 123.4"),
        ('lat="30.2" lon="-181"', "2026-11-20T01:00:05Z", "bad longitude -181.0"),
        ('lat="north" lon="120.1"', "2026-11-20T01:00:05Z", "lat/lon are not numbers"),
        ('lon="120.1"', "2026-11-20T01:00:05Z", "no lat attribute"),
        ('lat="30.2" lon="120.1"', "yesterday", "time 'yesterday' is not ISO 8601"),
        ('lat="30.2" lon="120.1"', "2026-11-20", "time '2026-11-20' is a day without a time of day"),
    ],
)
def test_gpx_bad_point_names_file_and_point(tmp_path: Path, attributes: str, time: str, message: str) -> None:
    text = '<gpx><trk><trkseg><trkpt lat="30.25" lon="120.14"><time>2026-11-20T01:00:00Z</time></trkpt>'
    text += f"<trkpt {attributes}><time>{time}</time></trkpt></trkseg></trk></gpx>"
    with pytest.raises(TrackError, match=r"bad\.gpx: point 2 \(trkpt\): " + message) as error:
        load_track(write(tmp_path, "bad.gpx", text))
    assert error.value.detail.startswith("point 2 (trkpt): ")
    # caught by name: a bug's ValueError is never shown to a user as an unreadable track
    assert isinstance(error.value, InputError) and not isinstance(error.value, ValueError)


def test_gpx_not_xml_or_without_times(tmp_path: Path) -> None:
    with pytest.raises(TrackError, match=r"cut\.gpx: line 3, column \d+: not well-formed XML"):
        load_track(write(tmp_path, "cut.gpx", '<gpx>\n<trk><trkseg>\n<trkpt lat="30.2" lon="120.1"><ti'))
    no_time = '<gpx><trk><trkseg><trkpt lat="30.2" lon="120.1"/></trkseg></trk></gpx>'
    with pytest.raises(TrackError, match=r"untimed\.gpx: no fixes with time \(1 point\(s\) without time\)"):
        load_track(write(tmp_path, "untimed.gpx", no_time))


# --- NMEA ---


def test_nmea_rmc_and_gga_with_checksums(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        nmea("GPGGA,235958.00,3015.0000,N,12008.4000,E,1,08,0.9,10.0,M,0.0,M,,"),  # no date yet: skipped
        nmea("GPRMC,235959.00,A,3015.0000,N,12008.4000,E,19.438,90.0,201126,,,A"),
        nmea("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"),  # ignored kind
        nmea("GNGGA,000009.00,3015.0600,N,12008.5200,E,1,08,0.9,10.0,M,0.0,M,,"),  # after midnight
        "$GPRMC,000019.00,A,3016.0000,N,12009.0000,E,0.0,0.0,211126,,,A*00",  # wrong checksum
        nmea("GPRMC,000029.00,V,,,,,,,211126,,,N"),  # void fix
        "2026-11-21 00:00:39 " + nmea("GNRMC,000039.00,A,3015.1200,S,12008.6400,W,0.0,,211126,,,A"),
        "GPRMC,000049.00,A,3015.0000,N,12008.4000,E,0.0,0.0,211126,,,A",  # no '$': not a sentence
        "$GPRMC,000059.00,A,3015.00",  # cut off by a power loss
    ]
    path = write(tmp_path, "log.nmea", "\r\n".join(lines))
    with caplog.at_level(logging.WARNING, logger="streams.gps"):
        track = load_track(path)
    assert [f.time for f in track] == [
        datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 11, 21, 0, 0, 9, tzinfo=UTC),
        datetime(2026, 11, 21, 0, 0, 39, tzinfo=UTC),
    ]
    first, second, third = track.fixes
    assert (first.lat, first.lon) == (30.25, 120.14)
    assert first.speed_mps == pytest.approx(10.0, abs=1e-3) and first.heading_deg == 90.0  # 19.438 kn
    assert (second.lat, second.lon) == (pytest.approx(30.251), pytest.approx(120.142))
    assert (third.lat, third.lon) == (pytest.approx(-30.252), pytest.approx(-120.144))
    assert track.skipped == {
        "GGA before any dated RMC": 1,
        "bad checksum": 1,
        "void fix": 1,
        "unreadable": 1,
    }
    assert "log.nmea: 4 sentence(s) skipped" in caplog.text and "line 5: bad checksum" in caplog.text
    assert "log.nmea: 1 sentence(s) without a fix dropped, lines 6..6" in caplog.text


def test_nmea_without_a_good_fix_is_an_error(tmp_path: Path) -> None:
    lines = [
        "$GPRMC,000019.00,A,3016.0000,N,12009.0000,E,0.0,0.0,211126,,,A*00",
        nmea("GPRMC,000029.00,V,,,,,,,211126,,,N"),
    ]
    with pytest.raises(
        TrackError,
        match=r"void\.nmea: no fixes with time \(1 sentence\(s\) bad checksum, 1 sentence\(s\) void fix\)",
    ):
        load_track(write(tmp_path, "void.nmea", "\n".join(lines)))


def blackvue_gps(fixes: list[tuple[datetime, float, float]]) -> list[str]:
    """A BlackVue `.gps` log, written here to the format (not copied from a device): each sentence after
    `[ms]`, the Unix time in milliseconds the camera wrote the line at (here 700 ms after the fix),
    once a second a GGA, an RMC and a VTG; the first VTG with the next line's `[ms]` glued after its
    checksum, as BlackVue cameras write now and then. `fixes`: time, and
    lat / lon in ddmm.mmmm as NMEA writes them (3015.8400 is 30.264 degrees)."""
    lines = []
    for when, lat, lon in fixes:
        ms = round((when.timestamp() + 0.7) * 1000)
        hms, dmy = when.strftime("%H%M%S.00"), when.strftime("%d%m%y")
        lines.append(f"[{ms}]" + nmea(f"GPGGA,{hms},{lat:09.4f},N,{lon:010.4f},E,1,09,0.9,12.5,M,7.0,M,,"))
        lines.append(f"[{ms}]" + nmea(f"GPRMC,{hms},A,{lat:09.4f},N,{lon:010.4f},E,10.5,45.0,{dmy},,,A"))
        lines.append(f"[{ms}]" + nmea("GPVTG,45.0,T,,M,10.5,N,19.4,K,A"))
    lines[2] += f"[{round((fixes[1][0].timestamp() + 0.7) * 1000)}]"
    return lines


def test_a_blackvue_gps_log_is_read_by_the_fix_times_of_its_rmc_sentences(tmp_path: Path) -> None:
    """A BlackVue `.gps` (every line `[ms]$GP...`) was refused as JSON ("JSON is not a GPS track
    format"), its first character being "["; the fix times are the RMC's own, not the `[ms]` at which
    the camera wrote the line, and a GGA before any RMC is dated by its `[ms]`."""
    start = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)  # a patrol over midnight UTC
    lines = blackvue_gps(
        [(start, 3015.84, 12008.88), (start + timedelta(seconds=1), 3015.85, 12008.89)]
        + [(start + timedelta(seconds=2), 3015.86, 12008.90)]
    )
    assert lines[0].startswith("[1795219199700]$GPGGA,235959.00,3015.8400,N,12008.8800,E,1,09"), lines[0]
    assert lines[2].endswith("*hh[1795219200700]".replace("hh", lines[2].split("*")[1][:2])), lines[2]
    del lines[1]  # the receiver's first fix gives a GGA, its first RMC a second later
    # a GGA written while the camera's clock said 2000-01-01: no time of this patrol, dropped
    stale = nmea("GPGGA,235958.00,3015.8400,N,12008.8800,E,1,04,2.5,12.5,M,7.0,M,,")
    lines.insert(0, "[946684800000]" + stale)
    track = load_track(write(tmp_path, "20261121_075959_NF.gps", "\n".join(lines) + "\n"))
    assert [f.time for f in track] == [start, start + timedelta(seconds=1), start + timedelta(seconds=2)]
    assert (track.fixes[0].lat, track.fixes[0].lon) == (pytest.approx(30.264), pytest.approx(120.148))
    assert track.fixes[0].speed_mps is None  # from the GGA before any RMC, dated by its [ms]
    assert track.fixes[1].speed_mps == pytest.approx(10.5 * 1852 / 3600) and track.fixes[1].heading_deg == 45
    assert track.skipped == {
        "duplicate time": 2,  # each later second's GGA and RMC
        "GGA dated by a camera clock far from the RMC times": 1,
    }


@pytest.mark.parametrize("name", ["FILE0001.log", "GPS_20261120.txt", "track.nmea", "trip.gps"])
def test_nmea_is_read_whatever_the_file_is_called(tmp_path: Path, name: str) -> None:
    """The format is told from the content, not the name: a Novatek dashcam's `.log` / `.txt` of NMEA
    (a header line of its own first) is read as NMEA."""
    text = "GPS LOG V1.0 MODEL=XX-100\n" + "\n".join(
        nmea(f"GNRMC,0100{s:02d}.00,A,3015.8400,N,12008.8800,E,0.0,,201126,,,A") for s in (0, 10)
    )
    track = load_track(write(tmp_path, name, text))
    assert [f.time for f in track] == [at(0), at(10)]


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20 09:00:00 [INFO] power on, firmware 1.2.3\n2026-11-20 09:00:05 [WARN] SD card slow\n",
        "EVENT LOG\nG-sensor trigger 3\n",
    ],
)
def test_a_file_that_is_no_track_is_named_with_the_formats_read(tmp_path: Path, text: str) -> None:
    """A dashcam's event log chosen as the track failed as a CSV whose "header has no time column",
    as if it were a CSV track with a misnamed column."""
    with pytest.raises(TrackError) as caught:
        load_track(write(tmp_path, "EVENT0001.log", text))
    message = str(caught.value)
    assert f"{tmp_path / 'EVENT0001.log'}: not a GPS track (line 1, '{text.splitlines()[0][:40]}" in message
    assert message.endswith(
        "tracks read: GPX with timed points, NMEA 0183 RMC/GGA sentences (.nmea/.log/.txt, a BlackVue "
        ".gps), or CSV with a time,lat,lon (or 时间,纬度,经度) header, or date,time,lat,lon with the day in "
        "its own column"
    ), message


# --- CSV ---


def test_csv_iso_offsets_unix_seconds_and_case_insensitive_header(tmp_path: Path) -> None:
    text = (
        "TimeStamp,Latitude,LNG,Speed_kmh,Heading,note\n"
        f"{T0.timestamp():.0f},30.25,120.14,36,90,start\n"
        "2026-11-20T09:00:10+08:00,30.26,120.15,,,\n"
        "2026-11-20T01:00:20Z,30.27,120.16,,,\n"
        "2026-11-20 01:00:30.5,30.28,120.17,,,zone-less: UTC by default\n"
        ",,,,,\n"
        "2026-11-20T01:00:40Z,,,,,no fix\n"
    )
    track = load_track(write(tmp_path, "track.csv", text))
    assert [f.time for f in track] == [at(0), at(10), at(20), at(30.5)]
    assert track.fixes[0].speed_mps == pytest.approx(10.0) and track.fixes[0].heading_deg == 90.0
    assert track.skipped == {"without a fix": 1}
    assert close_to(track.position_at(at(15)), 30.265, 120.155)


def test_csv_zone_less_times_in_the_given_zone(tmp_path: Path) -> None:
    path = write(
        tmp_path, "local.csv", "utc;lat;lon\n2026-11-20 09:00:00;30.25;120.14\n1795136410.25;30.26;120.15\n"
    )
    track = load_track(path, tz=CST)  # semicolons; 09:00 at +08:00 is 01:00 UTC
    assert track.start == at(0)
    assert track.end == at(10.25)


def test_csv_date_and_time_columns(tmp_path: Path) -> None:
    """A logger's export with the day in a `date` column and the time of day in a `time` column was
    refused ("time '08:15:02' is neither ISO 8601 nor Unix seconds"). The two make the fix's time: the
    day year first (2026-11-20, or 2026/11/20 as a spreadsheet writes it), the time of day in the given
    zone unless it carries an offset; a time column holding the whole time keeps it."""
    text = (
        "Date,Time,Lat,Lon\n"
        "2026-11-20,09:00:00,30.25,120.14\n"
        "2026/11/20,9:00:10,30.26,120.15\n"
        "2026-11-20,01:00:20Z,30.27,120.16\n"
        "2026-11-20,09:00:30.5+08:00,30.28,120.17\n"
        "2026-11-20,2026-11-20T09:00:40+08:00,30.29,120.18\n"
    )
    track = load_track(write(tmp_path, "split.csv", text), tz=CST)
    assert [f.time for f in track] == [at(0), at(10), at(20), at(30.5), at(40)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "time,lat,lon\n2026-11-20T01:00:00Z,30.2,120.1\n2026-11-20T01:00:01Z,123.4,120.1\n",
            "line 3: bad latitude 123.4",
        ),
        ("time,lat,lon\n2026-11-20T01:00:00Z,30.2,200\n", "line 2: bad longitude 200.0"),
        ("time,lat,lon\n2026-11-20T01:00:00Z,30,2N,120.1\n", "line 2: lat/lon are not numbers"),
        ("time,lat,lon\nnoon,30.2,120.1\n", "line 2: time 'noon' is neither ISO 8601 nor Unix seconds"),
        ("time,lat,lon\n2026-11-20,30.2,120.1\n", "line 2: time '2026-11-20' is a day without a time of day"),
        ("time,lat,lon\n1795136400000,30.2,120.1\n", r"line 2: time 1795136400000 is not Unix seconds"),
        # seconds from the recording's start, a time of day hhmmss: read as Unix seconds, they dated the
        # fixes (and footage aligned on them, and its cases) in 1970
        (
            "time,lat,lon\n0,30.2,120.1\n1,30.2001,120.1\n",
            r"line 2: time 0 as Unix seconds is 1970-01-01T00:00:00Z, no time of a patrol \(seconds from",
        ),
        ("time,lat,lon\n080000,30.2,120.1\n", r"line 2: time 080000 as Unix seconds is 1970-01-01T22:13:20Z"),
        ("time,lat,lon\n,30.2,120.1\n", "line 2: no time"),
        # a time of day needs its day: from a date column beside it (test_csv_date_and_time_columns)
        (
            "time,lat,lon\n08:15:02,30.2,120.1\n",
            r"line 2: time '08:15:02' is a time of day without a day: write ISO 8601 times \(2026-11-03T08",
        ),
        (
            "date,time,lat,lon\n,08:15:02,30.2,120.1\n",
            "line 2: the date column is empty beside time '08:15:02'",
        ),
        (
            "date,time,lat,lon\n03/11/2026,08:15:02,30.2,120.1\n",
            r"line 2: date '03/11/2026' is not a date written year first \(2026-11-03\)",
        ),
        ("date,time,lat,lon\n2026-02-30,08:15:02,30.2,120.1\n", "line 2: date '2026-02-30' is not a date"),
        ("when,lat,lon\n1,30.2,120.1\n", "line 1: the header has no time column"),
        ("\n\ntime,y,x\n1,30.2,120.1\n", "line 3: the header has no latitude column"),
        ("time,lat,lon\n", "no fixes with time"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TrackError, match=r"^.*bad\.csv: " + message):
        load_track(write(tmp_path, "bad.csv", text))


def test_format_is_told_by_content_not_name(tmp_path: Path) -> None:
    gpx = load_track(write(tmp_path, "upload.track", GPX_11))
    sentences = "\n".join(
        [
            nmea("GPTXT,01,01,02,ANTSTATUS=OK"),
            nmea("GPRMC,010000.00,A,3015.0000,N,12008.4000,E,0.0,0.0,201126,,,A"),
        ]
    )
    log = load_track(write(tmp_path, "upload.txt", sentences))
    assert len(gpx) == 3 and log.start == at(0)
    with pytest.raises(TrackError, match=r"empty\.csv: empty file"):
        load_track(write(tmp_path, "empty.csv", " \n"))
    with pytest.raises(TrackError, match=r"missing\.gpx: cannot read the file"):
        load_track(tmp_path / "missing.gpx")
    (tmp_path / "latin1.csv").write_bytes(b"time,lat,lon\n1,30.2,120.1\n2,30.3,\xe9\n")
    with pytest.raises(TrackError, match=r"latin1\.csv: line 3: not UTF-8 text"):
        load_track(tmp_path / "latin1.csv")


# --- the track itself ---


def test_out_of_order_fixes_are_sorted_and_duplicates_dropped() -> None:
    fixes = [
        Fix(at(10), 30.26, 120.15),
        Fix(at(0), 30.25, 120.14),
        Fix(at(10), 30.99, 120.99, speed_mps=3.0),  # same time again: dropped, its speed kept
        Fix(at(5), 30.255, 120.145),
    ]
    track = GpsTrack(fixes, name="t")
    assert [f.time for f in track] == [at(0), at(5), at(10)]
    assert track.fixes[2] == Fix(at(10), 30.26, 120.15, speed_mps=3.0)
    assert track.skipped == {"duplicate time": 1}
    with pytest.raises(TrackError, match="t: no fixes with time"):
        GpsTrack([], name="t")


# fixes at 0, 10, 20 s, then a 60 s gap (a tunnel), then 80 and 90 s
GAPPY = GpsTrack(
    [
        Fix(at(0), 30.25, 120.14),
        Fix(at(10), 30.26, 120.16),
        Fix(at(20), 30.26, 120.18),
        Fix(at(80), 30.30, 120.18),
        Fix(at(90), 30.31, 120.18),
    ],
    name="gappy",
)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, (30.25, 120.14)),
        (2.5, (30.2525, 120.145)),
        (10.0, (30.26, 120.16)),
        (17.5, (30.26, 120.175)),
        (-4.9, (30.25, 120.14)),  # just before the start: the first fix
        (-5.1, None),  # before the start by more than the tolerance
        (24.0, (30.26, 120.18)),  # just into the gap: the fix before it
        (50.0, None),  # in the tunnel: no position invented
        (76.0, (30.30, 120.18)),  # just before the fix after the gap
        (85.0, (30.305, 120.18)),
        (94.9, (30.31, 120.18)),
        (95.1, None),  # after the end by more than the tolerance
    ],
)
def test_position_at_interpolates_and_refuses_gaps_and_edges(
    seconds: float, expected: tuple[float, float] | None
) -> None:
    position = GAPPY.position_at(at(seconds))
    if expected is None:
        assert position is None
    else:
        assert close_to(position, *expected), position


def test_position_at_options_and_time_zones() -> None:
    assert GAPPY.position_at(at(50), max_gap_s=120) is not None  # a longer gap allowed: interpolated
    assert close_to(GAPPY.position_at(at(50), max_gap_s=120), 30.28, 120.18)
    assert GAPPY.position_at(at(-4), tolerance_s=1) is None
    assert close_to(GAPPY.position_at(at(5).astimezone(CST)), 30.255, 120.15)  # any zone, same instant
    assert close_to(GAPPY.position_at(at(5).replace(tzinfo=None)), 30.255, 120.15)  # naive: UTC


def test_interpolation_over_the_180th_meridian_takes_the_short_way() -> None:
    track = GpsTrack([Fix(at(0), -17.0, 179.9995), Fix(at(2), -17.0, -179.9995)])
    assert close_to(track.position_at(at(0.5)), -17.0, 179.99975)
    assert close_to(track.position_at(at(1.5)), -17.0, -179.99975)


# --- alignment with frames ---

IMAGE = np.zeros((4, 4, 3), dtype=np.uint8)


def frames(
    times: list[float], *, start: datetime | None = None, position: GeoPoint | None = None
) -> list[Frame]:
    return [
        Frame(
            image=IMAGE,
            ts=ts,
            source_id="van",
            index=i,
            wall_time=start + timedelta(seconds=ts) if start else None,
            position=position,
        )
        for i, ts in enumerate(times)
    ]


def test_frames_with_a_start_time_get_the_position_at_their_wall_time() -> None:
    depot = GeoPoint(30.20, 120.10)
    # naive local start time at +08:00: 09:00:05 local is 5 s into the track
    start = datetime(2026, 11, 20, 9, 0, 5)
    located = list(
        with_track_positions(frames([0, 5, 45, 100], start=start, position=depot), GAPPY, local_tz=CST)
    )
    assert close_to(located[0].position, 30.255, 120.15)
    assert close_to(located[1].position, 30.26, 120.16)
    assert located[2].position == depot  # in the gap: the camera's configured position stays
    assert located[3].position == depot  # after the track
    assert [f.wall_time for f in located] == [f.wall_time for f in frames([0, 5, 45, 100], start=start)]


def test_frames_without_a_start_time_are_aligned_with_the_first_fix(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="streams.gps"):
        located = list(with_track_positions(frames([0.4, 2.9, 50.4, 85.4]), GAPPY))
    assert [f.wall_time for f in located] == [at(0), at(2.5), at(50), at(85)]
    assert close_to(located[0].position, 30.25, 120.14)
    assert close_to(located[1].position, 30.2525, 120.145)
    assert located[2].position is None
    assert close_to(located[3].position, 30.305, 120.18)
    assert "aligned with the track's first fix" in caplog.text
    assert "1 of 4 frame(s) fell outside the track" in caplog.text


def test_heading_from_the_receivers_course_or_from_the_fixes_around_the_time() -> None:
    east = 10.0 / (111_195.0 * math.cos(math.radians(30.0)))  # degrees of longitude for 10 m at 30 N
    driving = GpsTrack([Fix(at(s), 30.0, 120.0 + s * east) for s in range(6)], name="east")
    assert driving.heading_at(at(2.5)) == pytest.approx(90.0, abs=0.5)  # 10 m/s due east
    assert driving.heading_at(at(5)) == pytest.approx(90.0, abs=0.5)  # the last fix: the one before
    assert driving.heading_at(at(60)) is None  # past the track
    with_course = GpsTrack(
        [Fix(at(0), 30.0, 120.0, speed_mps=8.0, heading_deg=45.0), Fix(at(1), 30.0, 120.0 + east)], name="c"
    )
    assert with_course.heading_at(at(0.2)) == 45.0  # the receiver's own course while moving
    standing = GpsTrack(
        [Fix(at(s), 30.0 + 1e-6 * (s % 2), 120.0, speed_mps=0.1, heading_deg=300.0) for s in range(10)],
        name="standing",
    )
    assert standing.heading_at(at(5)) is None  # GPS noise around a standing car points nowhere
    creeping = GpsTrack([Fix(at(s), 30.0 + s * 1e-5, 120.0) for s in range(10)], name="north")
    assert creeping.heading_at(at(4.5)) == pytest.approx(0.0, abs=0.5)  # 1.1 m/s: widened to 2 m


def test_gps_jumps_faster_than_a_car_are_dropped_with_where(caplog: pytest.LogCaptureFixture) -> None:
    north = 10.0 / 111_195.0  # degrees of latitude for 10 m
    fixes = [Fix(at(s), 30.0 + s * north, 120.0) for s in range(6)]  # 10 m/s due north
    fixes[3] = Fix(at(3), 30.01, 120.0)  # 1.1 km off in a second: a jump
    track = GpsTrack(fixes, name="van.gpx")
    with caplog.at_level(logging.WARNING, logger="streams.gps"):
        clean = track.without_jumps()
    assert [f.time for f in clean] == [at(0), at(1), at(2), at(4), at(5)]
    assert clean.skipped == {"jump": 1}
    assert "van.gpx: 1 fix(es) dropped, reached faster than 252 km/h" in caplog.text
    assert "(30.01000, 120.00000)" in caplog.text  # where
    assert track.without_jumps(max_speed_mps=2000.0) is track  # none: the same track
    steady = GpsTrack([Fix(at(s), 30.0 + s * north, 120.0) for s in range(6)], name="steady")
    assert steady.without_jumps() is steady


@pytest.mark.parametrize(
    ("start", "dropped"),
    [
        ([(0.0, 0.0)], 1),  # a cold receiver's 0, 0
        ([(31.2, 121.4)] * 3, 3),  # yesterday's parking place, 150 km away, repeated until the lock
    ],
)
def test_bad_first_fixes_are_the_jumps_not_the_whole_track_after_them(
    start: list[tuple[float, float]], dropped: int
) -> None:
    """A logger's first fixes are often stale or 0, 0. Checked from the first fix, every true fix after
    them was a jump and a whole patrol's track came down to that one stale place."""
    north = 10.0 / 111_195.0  # degrees of latitude for 10 m
    stale = [Fix(at(s), lat, lon) for s, (lat, lon) in enumerate(start)]
    true = [Fix(at(s), 30.0 + s * north, 120.0) for s in range(len(start), 60)]
    clean = GpsTrack(stale + true, name="van.gpx").without_jumps()
    assert list(clean) == true
    assert clean.skipped == {"jump": dropped}


def test_nmea_speed_or_course_that_is_no_number_is_left_out(tmp_path: Path) -> None:
    """A logger writing 'nan' for an unknown course: the fix is kept, without that course (as in CSV);
    a course of NaN used to reach dead reckoning and make every later position NaN."""
    lines = [
        nmea("GPRMC,080000.00,A,3015.0000,N,12008.4000,E,nan,nan,011226,,,A"),
        nmea("GPRMC,080001.00,A,3015.0010,N,12008.4000,E,inf,12.5,011226,,,A"),
    ]
    track = load_track(write(tmp_path, "nan.nmea", "\n".join(lines)))
    first, second = track.fixes
    assert first.speed_mps is None and first.heading_deg is None
    assert second.speed_mps is None and second.heading_deg == 12.5


def test_a_csv_cell_over_the_csv_module_s_limit_is_named(tmp_path: Path) -> None:
    text = "time,lat,lon\n2026-12-01T00:00:00Z,31.2,121.4," + "x" * 200_000 + "\n"
    with pytest.raises(TrackError, match=r"big\.csv: line 2: field larger than field limit"):
        load_track(write(tmp_path, "big.csv", text))


def test_tracks_in_gbk_are_read(tmp_path: Path) -> None:
    """A GPX that declares encoding="GBK" (some Chinese loggers) and a CSV saved by Excel on a Chinese
    Windows (GBK, with a notes column) are read; before, both were "not UTF-8 text"."""
    gpx = GPX_11.replace('encoding="UTF-8"', 'encoding="GBK"').replace("<trk>", "<trk><name>西湖巡逻</name>")
    assert 'encoding="GBK"' in gpx
    (tmp_path / "gbk.gpx").write_bytes(gpx.encode("gbk"))
    assert len(load_track(tmp_path / "gbk.gpx")) == 3
    csv_text = "time,lat,lon,备注\n2026-11-20 09:00:00,30.26,120.14,北山街\n"
    (tmp_path / "excel.csv").write_bytes(csv_text.encode("gbk"))
    track = load_track(tmp_path / "excel.csv", tz=CST)
    assert [(f.time, f.lat, f.lon) for f in track] == [(at(0), 30.26, 120.14)]
    (tmp_path / "mislabelled.gpx").write_bytes(
        gpx.replace('encoding="GBK"', 'encoding="UTF-8"').encode("gbk")
    )
    assert len(load_track(tmp_path / "mislabelled.gpx")) == 3
    (tmp_path / "unknown.gpx").write_bytes(gpx.replace("GBK", "X-MARTIAN").encode("gbk"))
    with pytest.raises(
        TrackError, match=r"unknown\.gpx: line 1: the XML declaration names an unknown encoding"
    ):
        load_track(tmp_path / "unknown.gpx")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("track.json", '[{"time": "2026-11-20T01:00:00Z", "lat": 30.26, "lon": 120.14}]', "JSON is not"),
        ("geo.json", '{"type": "FeatureCollection", "features": []}', "JSON is not"),
        (
            "route.kml",
            '<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document/></kml>',
            "the root element is <kml>, not <gpx>",
        ),
    ],
)
def test_other_formats_are_named_not_read_as_csv_or_empty_gpx(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    """JSON was read as a CSV without a time column, KML as a GPX without points."""
    with pytest.raises(TrackError, match=rf"{name}: {message}"):
        load_track(write(tmp_path, name, text))


_HEADED = (
    "time,lat,lon,{column}\n2026-11-20T01:00:00Z,30.25,120.14,{a}\n2026-11-20T01:00:10Z,30.26,120.14,{b}\n"
)


@pytest.mark.parametrize(
    ("column", "a", "b", "headings", "warning"),
    [
        ("heading", "90", "359.5", [90.0, 359.5], None),
        ("course", "360", "-90", [360.0, -90.0], None),  # a signed heading is a heading
        ("bearing", "-360", "", [-360.0, None], None),
        ("heading", "nan", "12", [None, 12.0], None),  # unknown, as before
        ("heading", "N", "90", [None, None], "line 2: heading 'N' is not degrees"),
        ("course", "45", "north", [None, None], "line 3: course 'north' is not degrees"),
        ("heading", "720", "90", [None, None], "line 2: heading '720' is not degrees"),
        ("bearing", "10", "-5000", [None, None], "line 3: bearing '-5000' is not degrees"),
        ("heading", "27000", "9000", [None, None], "(2 such value(s))"),  # hundredths of a degree
        ("heading", "x" * 5000, "90", [None, None], "line 2: heading '" + "x" * 40 + "…' is not degrees"),
    ],
)
def test_a_csv_heading_that_is_no_degrees_is_ignored_with_a_warning(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    column: str,
    a: str,
    b: str,
    headings: list[float | None],
    warning: str | None,
) -> None:
    """A dashcam's track whose heading column holds text ('N') or more than one turn (720, -5000) is
    read, positions and all, without that column: the heading then comes from the fixes. It failed
    the upload (text) or was wrapped round silently (720 taken as 0)."""
    with caplog.at_level(logging.WARNING, logger="streams.gps"):
        track = load_track(write(tmp_path, "dashcam.csv", _HEADED.format(column=column, a=a, b=b)))
    assert [f.heading_deg for f in track] == headings and len(track) == 2
    warnings = [r.getMessage() for r in caplog.records if "column is ignored" in r.getMessage()]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warning in warnings[0] and f"{column} column is ignored" in warnings[0]
        assert warnings[0].startswith(f"{tmp_path / 'dashcam.csv'}: ")
        assert track.heading_at(at(5)) == pytest.approx(0.0, abs=0.5)  # due north, from the fixes


@pytest.mark.parametrize(
    ("column", "a", "b", "speeds", "warning"),
    [
        ("speed", "5", "0", [5.0, 0.0], None),
        ("speed_kmh", "36", "252", [10.0, 70.0], None),  # km/h, up to MAX_SPEED_MPS
        ("speed_mps", "nan", "3", [None, 3.0], None),  # unknown, as before
        ("speed", "36 km/h", "5", [None, None], "line 2: speed '36 km/h' is not a speed within 0..70 m/s"),
        ("speed_m_s", "5", "-5", [None, None], "line 3: speed_m_s '-5' is not a speed within 0..70 m/s"),
        ("speed", "100000", "5", [None, None], "line 2: speed '100000' is not a speed within 0..70 m/s"),
        ("speed_kph", "300", "5", [None, None], "line 2: speed_kph '300' is not a speed within 0..252 km/h"),
        ("speed", "80", "90", [None, None], "(2 such value(s)), the track read without speeds"),  # km/h
    ],
)
def test_a_csv_speed_that_is_no_speed_is_ignored_with_a_warning(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    column: str,
    a: str,
    b: str,
    speeds: list[float | None],
    warning: str | None,
) -> None:
    """A track whose speed column holds text ('36 km/h'), a negative speed or one no patrol vehicle
    drives is read, positions and all, without that column (as the heading column is): text failed
    the upload ("speed '36 km/h' is not a number") and -5 or 100000 m/s were taken as speeds."""
    with caplog.at_level(logging.WARNING, logger="streams.gps"):
        track = load_track(write(tmp_path, "dashcam.csv", _HEADED.format(column=column, a=a, b=b)))
    assert [f.speed_mps for f in track] == [pytest.approx(v) if v is not None else None for v in speeds]
    assert len(track) == 2
    warnings = [r.getMessage() for r in caplog.records if "column is ignored" in r.getMessage()]
    if warning is None:
        assert warnings == [] and track.notes == ()
    else:
        assert len(warnings) == 1 and warning in warnings[0] and f"{column} column is ignored" in warnings[0]
        assert track.notes == (warnings[0].removeprefix(f"{tmp_path / 'dashcam.csv'}: "),)


def test_a_speed_and_a_heading_that_are_no_values_are_each_named(tmp_path: Path) -> None:
    text = "time,lat,lon,speed,heading\n2026-11-20T01:00:00Z,30.25,120.14,fast,N\n"
    track = load_track(write(tmp_path, "both.csv", text))
    assert track.notes == (
        "line 2: speed 'fast' is not a speed within 0..70 m/s: the track's speed column is ignored "
        "(1 such value(s)), the track read without speeds",
        "line 2: heading 'N' is not degrees within one turn (-360..360): the track's heading column is "
        "ignored (1 such value(s)), the heading taken from the fixes",
    )


def test_a_gpx_or_nmea_speed_that_is_no_speed_is_ignored_with_a_warning(tmp_path: Path) -> None:
    """GPX speed in m/s, NMEA in knots: text or a speed beyond MAX_SPEED_MPS drops the column, the
    fixes kept (an NMEA sentence with text for its speed was skipped as unreadable)."""
    gpx = GPX_11.replace("<gpxtpx:speed>5.5<", "<gpxtpx:speed>5.5 m/s<")
    assert "5.5 m/s" in gpx
    sentences = [
        nmea("GPRMC,080000.00,A,3015.0000,N,12008.4000,E,fast,90.0,011226,,,A"),
        nmea("GPRMC,080001.00,A,3015.0010,N,12008.4000,E,10.0,90.0,011226,,,A"),
    ]
    too_fast = [
        nmea("GPRMC,080000.00,A,3015.0000,N,12008.4000,E,136.0,90.0,011226,,,A"),  # 70 m/s
        nmea("GPRMC,080001.00,A,3015.0010,N,12008.4000,E,137.0,90.0,011226,,,A"),
    ]
    from_gpx = load_track(write(tmp_path, "speed.gpx", gpx))
    from_nmea = load_track(write(tmp_path, "speed.nmea", "\n".join(sentences)))
    fast_nmea = load_track(write(tmp_path, "fast.nmea", "\n".join(too_fast)))
    assert len(from_gpx) == len(load_track(write(tmp_path, "plain.gpx", GPX_11)))
    assert [f.speed_mps for f in from_gpx] == [None] * len(from_gpx)
    assert from_gpx.notes[0].startswith("point 1 (trkpt): speed '5.5 m/s' is not a speed within 0..70 m/s")
    assert [f.speed_mps for f in from_nmea] == [None, None] and from_nmea.skipped == {}
    assert [f.heading_deg for f in from_nmea] == [90.0, 90.0]
    assert from_nmea.notes[0].startswith("line 1: speed 'fast' is not a speed within 0..136 knots")
    assert [f.speed_mps for f in fast_nmea] == [None, None]
    assert fast_nmea.notes[0].startswith("line 2: speed '137.0' is not a speed within 0..136 knots")


def test_a_gpx_or_nmea_course_that_is_no_degrees_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gpx = GPX_11.replace("<gpxtpx:course>12.5<", "<gpxtpx:course>NE<")
    assert "NE" in gpx
    sentences = [
        nmea("GPRMC,080000.00,A,3015.0000,N,12008.4000,E,10.0,720.0,011226,,,A"),
        nmea("GPRMC,080001.00,A,3015.0010,N,12008.4000,E,10.0,12.5,011226,,,A"),
    ]
    with caplog.at_level(logging.WARNING, logger="streams.gps"):
        from_gpx = load_track(write(tmp_path, "course.gpx", gpx))
        from_nmea = load_track(write(tmp_path, "course.nmea", "\n".join(sentences)))
    assert len(from_gpx) == len(load_track(write(tmp_path, "plain.gpx", GPX_11)))
    assert [f.heading_deg for f in from_gpx] == [None] * len(from_gpx)
    assert [f.heading_deg for f in from_nmea] == [None, None] and len(from_nmea) == 2
    text = caplog.text
    assert "course.gpx: point 1 (trkpt): course 'NE' is not degrees" in text
    assert "course.nmea: line 1: course '720.0' is not degrees" in text


# --- CSV headers as loggers write them: Chinese names, units in the name, a bare speed in km/h ---

REPO = Path(__file__).resolve().parents[2]


def _demo_cell_bounds(cell_id: str) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) of a cell of the demo grid (configs/demo-grid.geojson)."""
    grid = json.loads((REPO / "configs" / "demo-grid.geojson").read_text(encoding="utf-8"))
    (cell,) = [f for f in grid["features"] if f["properties"]["id"] == cell_id]
    lons, lats = zip(*cell["geometry"]["coordinates"][0], strict=True)
    return min(lons), min(lats), max(lons), max(lats)


EAST_PER_M = 1.0 / (111_195.0 * math.cos(math.radians(30.25)))  # degrees of longitude a metre at 30.25 N
NORTH_PER_M = 1.0 / 111_195.0
WOBBLE_M = (0.0, 1.5, -1.0, 0.5, -1.5, 1.0)  # GPS noise, in a fixed pattern


def _drive(speeds_mps: list[float]) -> list[tuple[float, float, float]]:
    """(seconds from T0, lat, lon) of a patrol car driving due east through DEMO-HUBIN-01 from its south-west
    corner, one fix a second at the given speeds, each fix a metre or so off (GPS noise)."""
    fixes, east_m = [], 0.0
    for second, speed in enumerate(speeds_mps):
        if second:
            east_m += (speeds_mps[second - 1] + speed) / 2
        wobble = WOBBLE_M[second % len(WOBBLE_M)]
        lat = 30.2495 + wobble * NORTH_PER_M
        lon = 120.1310 + (east_m + wobble) * EAST_PER_M
        fixes.append((float(second), round(lat, 7), round(lon, 7)))
    return fixes


# 36 km/h pulling away from a junction to 54 km/h and slowing down again
PATROL_MPS = [4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 15.0, 15.0, 14.0, 12.0, 10.0, 8.0, 10.0, 12.0, 12.0]


@pytest.mark.parametrize(
    ("header", "row", "speed_mps", "heading"),
    [
        # a Chinese logger app's export, as the probe found it
        ("时间,纬度,经度,速度,方向", "2026-11-20 09:00:00,30.25,120.14,5,90", 5.0, 90.0),
        ("定位时间,纬度,经度,海拔,速度(km/h),航向", "2026-11-20 09:00:00,30.25,120.14,12,36,90", 10.0, 90.0),
        ("日期,时间,经度,纬度,高度,速度(米/秒),方位", "2026-11-20,09:00:00,120.14,30.25,8,5,90", 5.0, 90.0),
        (
            "日期时间,纬度(度),经度(度),速度（公里/小时）,方位角",
            "2026-11-20 09:00:00,30.25,120.14,36,90",
            10.0,
            90.0,
        ),
        ("时间戳,纬度,经度,速度(千米/时)", "1795136400,30.25,120.14,36", 10.0, None),
        ("时间,纬度,经度,速度(节)", "2026-11-20 09:00:00,30.25,120.14,10", 10 * 1852 / 3600, None),
        # English names with their unit in parentheses or brackets
        ("time,lat(deg),lon(deg),speed(m/s)", "2026-11-20 09:00:00,30.25,120.14,5", 5.0, None),
        ("time,lat,lon,speed (km/h)", "2026-11-20 09:00:00,30.25,120.14,36", 10.0, None),
        ("time,lat,lon,speed[kmh]", "2026-11-20 09:00:00,30.25,120.14,36", 10.0, None),
        ("time,lat,lon,Speed [KPH]", "2026-11-20 09:00:00,30.25,120.14,36", 10.0, None),
        ("time,lat,lon,speed(km/hr)", "2026-11-20 09:00:00,30.25,120.14,36", 10.0, None),
        ("time,lat,lon,speed(mps)", "2026-11-20 09:00:00,30.25,120.14,5", 5.0, None),
        ("time,lat,lon,speed (knots)", "2026-11-20 09:00:00,30.25,120.14,10", 10 * 1852 / 3600, None),
        ("time,lat,lon,speed(kn)", "2026-11-20 09:00:00,30.25,120.14,10", 10 * 1852 / 3600, None),
        (
            "Date Time,Latitude (°),Longitude (°),Speed (km/h),Course (deg)",
            "2026-11-20 09:00:00,30.25,120.14,36,90",
            10.0,
            90.0,
        ),
        ("date time;lat [deg];lon [deg];heading(°)", "2026-11-20 09:00:00;30.25;120.14;90", None, 90.0),
    ],
)
def test_csv_headers_in_chinese_and_with_units_are_read(
    tmp_path: Path, header: str, row: str, speed_mps: float | None, heading: float | None
) -> None:
    """A track whose header a Chinese logger app or spreadsheet wrote (时间,纬度,经度,速度,方向), or whose
    names carry their unit (`speed (km/h)`, `lat(deg)`), or a `date time` column, was refused ("the
    header has no time column"), or read without the speed its name gives a unit to. The unit in a speed
    column's name decides it; a column with no name read (海拔, 高度) is ignored, as before."""
    track = load_track(write(tmp_path, "logger.csv", f"{header}\n{row}\n"), tz=CST)
    assert [(f.time, f.lat, f.lon) for f in track] == [(at(0), 30.25, 120.14)]
    assert track.fixes[0].speed_mps == (pytest.approx(speed_mps) if speed_mps is not None else None)
    assert track.fixes[0].heading_deg == heading
    assert track.notes == ()


@pytest.mark.parametrize(
    ("cell", "when"),
    [
        ("2026/11/20 9:00:00", at(0)),
        ("2026/11/20 09:00", at(0)),
        ("2026/11/20 9:00:10.5", at(10.5)),
        ("2026/11/20 9:00:10+08:00", at(10)),
        ("2026/11/20 1:00:20Z", at(20)),
    ],
)
def test_a_csv_time_as_a_chinese_spreadsheet_writes_it(tmp_path: Path, cell: str, when: datetime) -> None:
    """Excel on a Chinese Windows writes a date-time cell `2026/11/20 9:00:00`: the 日期时间 column of a
    track saved from it was "neither ISO 8601 nor Unix seconds"."""
    track = load_track(write(tmp_path, "excel.csv", f"日期时间,纬度,经度\n{cell},30.25,120.14\n"), tz=CST)
    assert [f.time for f in track] == [when]


def test_a_spreadsheet_time_with_no_such_day_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrackError, match=r"excel\.csv: line 2: date '2026/2/30' is not a date written year"):
        load_track(write(tmp_path, "excel.csv", "日期时间,纬度,经度\n2026/2/30 9:00:00,30.25,120.14\n"))


@pytest.mark.parametrize(
    ("header", "speed_mps", "heading", "said"),
    [
        (
            "time,lat,lon,speed(mph),heading",
            None,
            90.0,
            "line 1: the speed(mph) column is in 'mph', not km/h, m/s or knots: the track read without "
            "speeds",
        ),
        (
            "时间,纬度,经度,速度,方向(rad)",
            5.0,
            None,
            "line 1: the 方向(rad) column is in 'rad', not degrees: the heading taken from the fixes",
        ),
    ],
)
def test_a_csv_speed_or_heading_in_a_unit_not_read_is_ignored_with_a_note(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    header: str,
    speed_mps: float | None,
    heading: float | None,
    said: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.gps"):
        track = load_track(
            write(tmp_path, "units.csv", f"{header}\n2026-11-20T01:00:00Z,30.25,120.14,5,90\n")
        )
    assert [(f.speed_mps, f.heading_deg) for f in track] == [(speed_mps, heading)]
    assert track.notes == (said,)
    assert said in caplog.text


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "time,lat(rad),lon",
            r"line 1: the lat\(rad\) column is in 'rad', not degrees \(WGS84 degrees are read\)",
        ),
        ("时间,纬度,经度(度分)", r"line 1: the 经度\(度分\) column is in '度分', not degrees"),
        ("time(local),lat,lon", r"line 1: the time\(local\) column's name says 'local', which is not read"),
        (
            "日期(北京),时间,纬度,经度",
            r"line 1: the 日期\(北京\) column's name says '北京', which is not read: name",
        ),
    ],
)
def test_a_csv_position_or_time_column_in_a_unit_not_read_is_refused(
    tmp_path: Path, header: str, message: str
) -> None:
    """Degrees and minutes (3015.0000 as NMEA writes it) or radians read as degrees would put the
    vehicle anywhere, a zone in a time column's name (UTC, 北京) read as the camera's zone would shift
    every fix by hours: refused, naming the column."""
    with pytest.raises(TrackError, match=r"units\.csv: " + message):
        load_track(write(tmp_path, "units.csv", f"{header}\n2026-11-20T01:00:00Z,30.25,120.14\n"))


def _export(header: str, row: str, speeds_mps: list[float], per_mps: float) -> str:
    """A logger's export of _drive(speeds_mps): `row` formatted with the fix's number, local time (UTC+8),
    day, time of day, lat, lon and speed (per_mps units a m/s)."""
    lines = [header]
    for number, ((second, lat, lon), speed) in enumerate(zip(_drive(speeds_mps), speeds_mps, strict=True)):
        local = (at(second) + timedelta(hours=8)).replace(tzinfo=None)
        lines.append(
            row.format(
                n=number + 1,
                when=local.isoformat(" "),
                day=local.strftime("%Y/%m/%d"),
                clock=local.strftime("%H:%M:%S"),
                lat=lat,
                lon=lon,
                speed=round(speed * per_mps, 1),
            )
        )
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    ("export", "encoding"),
    [
        (  # a Chinese logger app's export, saved again by Excel on a Chinese Windows (GBK)
            _export(
                "序号,定位时间,纬度,经度,海拔(m),速度(km/h),方向,卫星数",
                "{n},{when},{lat},{lon},12.5,{speed},90,9",
                PATROL_MPS,
                3.6,
            ),
            "gbk",
        ),
        (
            _export(
                "日期,时间,纬度,经度,高度,速度(米/秒),航向",
                "{day},{clock},{lat},{lon},8,{speed},90",
                PATROL_MPS,
                1.0,
            ),
            "utf-8-sig",
        ),
        (  # a logger writing km/h in a column named only `speed` (Columbus, Holux): told by the fixes
            _export(
                "INDEX,DATE,TIME,LATITUDE,LONGITUDE,HEIGHT,SPEED,HEADING",
                "{n},{day},{clock},{lat},{lon},9,{speed},90",
                PATROL_MPS,
                3.6,
            ),
            "utf-8",
        ),
        (
            _export(
                "date time,lat(deg),lon(deg),speed (km/h),course",
                "{when},{lat},{lon},{speed},90",
                PATROL_MPS,
                3.6,
            ),
            "utf-8",
        ),
    ],
)
def test_a_logger_s_track_through_the_demo_grid_is_read(tmp_path: Path, export: str, encoding: str) -> None:
    """Real-looking patrols through DEMO-HUBIN-01 (configs/demo-grid.geojson) at 15..54 km/h, in the
    header forms Chinese logger apps and spreadsheets write: every fix where the car was, in the cell,
    its speed in m/s, and the receiver's heading trusted while the car moves."""
    (tmp_path / "patrol.csv").write_bytes(export.encode(encoding))
    track = load_track(tmp_path / "patrol.csv", tz=CST)
    drive = _drive(PATROL_MPS)
    assert [(f.time, f.lat, f.lon) for f in track] == [(at(s), lat, lon) for s, lat, lon in drive]
    assert [f.speed_mps for f in track] == [pytest.approx(v, abs=0.03) for v in PATROL_MPS]
    assert track.heading_at(at(6.5)) == 90.0 and track.notes == ()
    west, south, east, north = _demo_cell_bounds("DEMO-HUBIN-01")
    for second in range(len(PATROL_MPS)):
        where = track.position_at(at(second + 0.5))
        assert where is not None and west < where.lon < east and south < where.lat < north


@pytest.mark.parametrize(
    ("column", "speeds_mps", "per_mps", "read_as"),
    [
        ("speed", PATROL_MPS, 1.0, "m/s"),  # an m/s column stays m/s
        ("速度", PATROL_MPS, 1.0, "m/s"),
        ("speed", PATROL_MPS, 3.6, "km/h"),  # 14.4 .. 54: read as m/s, 2..4 times too fast
        ("速度", PATROL_MPS, 3.6, "km/h"),
        ("speed", [15.0, 20.0, 25.0, 25.0, 25.0, 22.0, 20.0], 3.6, "km/h"),  # 90 km/h: all ignored as m/s
        ("speed", [4.0, 6.0, 8.0, 10.0, 12.0], 3.6, "m/s"),  # 4 moving steps: too few to guess from
        ("speed", [0.0] * 20, 3.6, "m/s"),  # standing: no moving step
        ("speed", PATROL_MPS, 3600 / 1852, "m/s"),  # knots: neither, as before
    ],
)
def test_the_unit_of_a_bare_speed_column_is_told_by_the_track_s_own_movement(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    column: str,
    speeds_mps: list[float],
    per_mps: float,
    read_as: str,
) -> None:
    """Columbus and Holux loggers write km/h in a column named `speed`: read as m/s, a car creeping at
    10 km/h (2.8 m/s) was taken as driving 36 km/h, and its receiver's course trusted (heading_at), or
    the column ignored (90 km/h over MAX_SPEED_MPS). The column is read as km/h when its values are
    about 3.6 times the speed between the fixes (the median over at least 5 moving steps), with an info
    line; an m/s column, or one read from fewer steps, or matching neither, is read as m/s as before."""
    text = _export(f"time,lat,lon,{column}", "{when},{lat},{lon},{speed}", speeds_mps, per_mps)
    with caplog.at_level(logging.INFO, logger="streams.gps"):
        track = load_track(write(tmp_path, "logger.csv", text), tz=CST)
    to_mps = 1 / 3.6 if read_as == "km/h" else 1.0
    said = [round(v * per_mps, 1) * to_mps for v in speeds_mps]
    assert [f.speed_mps for f in track] == [pytest.approx(v) for v in said] and track.notes == ()
    told = [r for r in caplog.records if "read as km/h" in r.getMessage()]
    if read_as == "km/h":
        assert len(told) == 1 and told[0].levelno == logging.INFO
        assert told[0].getMessage().startswith(f"{tmp_path / 'logger.csv'}: the {column} column is 3.")
    else:
        assert told == []
