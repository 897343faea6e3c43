"""Small, realistic stand-ins for users' own data, generated in the test (no download at run time):

* :func:`air_quality_csv` — shaped like the Beijing multi-site air-quality export (Zhang et al., 2017; UCI): a
  row-number column ``No`` restarting per station, year/month/day/hour, pollutants and weather, a text wind
  direction ``wd``, ``NA`` tokens and blank cells, one ``station`` column, stations concatenated in one file;
* :func:`labelled_sequences_csv` — a long CSV of labelled sequences (sequence id, ISO time, three features, label,
  owner), variable lengths, the class visible in the dynamics (like the Japanese-vowels speaker data);
* :func:`leaf_shakespeare` — a tiny LEAF JSON: users with 80-character windows ``x`` and the next character ``y``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

AIR_HEADER = ["No", "year", "month", "day", "hour", "PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES",
              "DEWP", "RAIN", "wd", "WSPM", "station"]
WINDS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW", "NNW", "ESE"]


def air_quality_csv(path: Path, stations: tuple[str, ...] = ("Aotizhongxin", "Changping", "Dingling"),
                    hours: int = 400, na_rate: float = 0.03, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [",".join(AIR_HEADER)]
    start = dt.datetime(2013, 3, 1)
    for s, station in enumerate(stations):
        pm = 80.0 + 20 * s
        for h in range(hours):
            when = start + dt.timedelta(hours=h)
            daily = np.sin(2 * np.pi * when.hour / 24)
            pm = max(3.0, 0.9 * pm + 0.1 * (90 + 40 * s) + 15 * daily + rng.normal(0, 6))
            row = [str(h + 1), str(when.year), str(when.month), str(when.day), str(when.hour), f"{pm:.0f}",
                   f"{pm * 1.3 + rng.normal(0, 5):.0f}", f"{4 + rng.gamma(2, 2):.0f}", f"{40 + 10 * daily:.0f}",
                   f"{800 + 5 * pm + rng.normal(0, 50):.0f}", f"{60 - 20 * daily + rng.normal(0, 5):.0f}",
                   f"{10 + 8 * daily:.1f}", f"{1015 + rng.normal(0, 3):.1f}", f"{-5 + rng.normal(0, 2):.1f}",
                   "0.0" if rng.random() > 0.05 else f"{rng.gamma(1, 1):.1f}", WINDS[int(rng.integers(len(WINDS)))],
                   f"{abs(rng.normal(2, 1)):.1f}", station]
            for j in (5, 6, 7, 8, 9, 10, 15):  # pollutants and wind direction go missing, as in the real files
                if h > 0 and rng.random() < na_rate:
                    row[j] = "NA" if rng.random() < 0.7 else ""
            lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def labelled_sequences_csv(path: Path, sequences: int = 240, owners: int = 6, classes: int = 3,
                           seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["seq,when,f1,f2,f3,label,owner"]
    rows = []
    for n in range(sequences):
        label = n % classes
        length = int(rng.integers(6, 20))
        freq = 0.3 + 0.5 * label
        phase = rng.uniform(0, 2 * np.pi)
        t0 = dt.datetime(2024, 1, 1) + dt.timedelta(days=int(rng.integers(300)))
        for t in range(length):
            f1 = np.sin(freq * t + phase) + rng.normal(0, 0.2)
            f2 = 0.5 * label + rng.normal(0, 0.5)
            f3 = rng.normal(0, 1)
            when = (t0 + dt.timedelta(minutes=7 * t)).isoformat()
            rows.append(f"s{n:04d},{when},{f1:.3f},{f2:.3f},{f3:.3f},{'abc'[label]},u{n % owners}")
    rng.shuffle(rows)  # the time column orders each sequence
    path.write_text("\n".join(lines + rows) + "\n", encoding="utf-8")
    return path


VERSE = ("Shall I compare thee to a summer's day? Thou art more lovely and more temperate: Rough winds do shake "
         "the darling buds of May, And summer's lease hath all too short a date; Sometime too hot the eye of "
         "heaven shines, And often is his gold complexion dimm'd; And every fair from fair sometime declines, "
         "By chance or nature's changing course untrimm'd; But thy eternal summer shall not fade, Nor lose "
         "possession of that fair thou ow'st; Nor shall death brag thou wander'st in his shade, When in eternal "
         "lines to time thou grow'st: So long as men can breathe or eyes can see, So long lives this, and this "
         "gives life to thee. ")


def leaf_shakespeare(path: Path, users: int = 3, samples: int = 60) -> Path:
    text = VERSE * 3
    data = {"users": [], "num_samples": [], "user_data": {}}
    for u in range(users):
        name = f"THE_SONNETS_{u}"
        offset = 37 * u
        xs = [text[offset + i:offset + i + 80] for i in range(samples)]
        ys = [text[offset + i + 80] for i in range(samples)]
        data["users"].append(name)
        data["num_samples"].append(samples)
        data["user_data"][name] = {"x": xs, "y": ys}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
