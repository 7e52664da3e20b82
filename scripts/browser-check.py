#!/usr/bin/env python3
"""Opens kvplan's HTML reports in headless Chromium and checks that they work (issue 8, item 6).

For each report: the page's own script must finish (<body data-ready="1">) with no uncaught error
(data-errors="0") and no console message at all; its self-test (URL #selftest: hover a buffer and
check the hover box names it, click every sortable table's first numeric header and check the
rows come out in order) must pass; and a screenshot must not be blank (enough non-white pixels and
colours — decoded here with zlib, no imaging library needed).

Reports checked: the golden toy report (Tests/KVInspectTests/Golden/toy.html) and one rendered now by
`kvplan inspect Generated/tiny-llama/cpu --html` with the debug build. Usage:
    python3 scripts/browser-check.py [--kvplan .build/debug/kvplan] [--keep DIR]
Exit 0 when every check passes; 1 with the failures listed otherwise; 2 when Chromium is missing.
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(binary, args, url):
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
           "--enable-logging=stderr", "--v=0", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in (2, 6):
                raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour})")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        filt = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if filt == 1:
                line[i] = (line[i] + left) & 255
            elif filt == 2:
                line[i] = (line[i] + up) & 255
            elif filt == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif filt == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def check(binary, html, keep):
    failures = []
    url = "file://" + os.path.abspath(html)
    dom = run_chromium(binary, ["--dump-dom"], url + "#selftest")
    console = [l for l in dom.stderr.splitlines() if "CONSOLE" in l]
    if console:
        failures.append("console messages:\n    " + "\n    ".join(console[:10]))
    body = next((l for l in dom.stdout.splitlines() if "<body" in l), "")
    for attribute in ('data-ready="1"', 'data-errors="0"', 'data-selftest="pass"'):
        if attribute not in body:
            failures.append(f"expected {attribute} on <body>, got: {body[:200]}")
    shot = os.path.join(keep, os.path.basename(html) + ".png")
    result = run_chromium(binary, [f"--screenshot={shot}", "--window-size=1280,1600"], url)
    if not os.path.exists(shot):
        failures.append(f"no screenshot: {result.stderr[-500:]}")
        return failures
    width, height, channels, rows = png_pixels(shot)
    colours, inked = set(), 0
    for row in rows[::4]:
        for x in range(0, width * channels, channels * 4):
            pixel = row[x:x + 3]
            colours.add(pixel)
            if min(pixel) < 235:
                inked += 1
    sampled = len(rows[::4]) * len(range(0, width * channels, channels * 4))
    share = inked / sampled
    print(f"  {os.path.basename(html)}: {width}x{height} screenshot, {share:.1%} of sampled pixels inked, {len(colours)} colours")
    if share < 0.03 or len(colours) < 8:
        failures.append(f"screenshot looks blank: {share:.1%} inked, {len(colours)} colours ({shot})")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvplan", default=os.path.join(ROOT, ".build/debug/kvplan"))
    parser.add_argument("--keep", help="directory for the reports and screenshots (default: a temporary one)")
    args = parser.parse_args()
    binary = chromium()
    if binary is None:
        print("browser-check: Chromium not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    work = args.keep or tempfile.mkdtemp(prefix="kvplan-browser-")
    os.makedirs(work, exist_ok=True)
    report = os.path.join(work, "tiny-llama-cpu.html")
    made = subprocess.run([args.kvplan, "inspect", os.path.join(ROOT, "Generated/tiny-llama/cpu"), "--html", report],
                          capture_output=True, text=True)
    if made.returncode != 0:
        print(f"browser-check: kvplan inspect --html failed ({made.returncode}): {made.stderr}", file=sys.stderr)
        return 1
    failures = []
    print(f"browser-check: {binary}")
    for html in (os.path.join(ROOT, "Tests/KVInspectTests/Golden/toy.html"), report):
        failures += [f"{os.path.basename(html)}: {f}" for f in check(binary, html, work)]
    if failures:
        print("browser-check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("browser-check: reports render, scripts run without errors, self-tests pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
