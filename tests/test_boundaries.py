"""The package's boundaries, checked by importing: results and the sans-io protocol never reach native code.

loadgen.results reads, judges and draws documents on any host, built library or not;
loadgen.fleet.protocol is the sans-io half of a security boundary. Each module is
imported alone in a fresh interpreter, which then reports what got loaded: the
native seam (loadgen.run.native), the library itself (loadgen._native, found in
the process's memory maps, since ctypes loads it without an import), and any other
module of the run side.
"""
import json
import pkgutil
import subprocess
import sys

import pytest

import loadgen.results

RESULTS_MODULES = sorted(m.name for m in pkgutil.iter_modules(loadgen.results.__path__, "loadgen.results."))
SANS_IO = ["loadgen.fleet.protocol"]

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
maps = open("/proc/self/maps").read()
print(json.dumps({
    "modules": sorted(m for m in sys.modules if m.startswith("loadgen.run") or m == "loadgen._native"),
    "library_mapped": "/_native." in maps,
}))
"""


def loaded_by(module: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_results_has_modules():
    assert {"loadgen.results.documents", "loadgen.results.histogram", "loadgen.results.report",
            "loadgen.results.claims", "loadgen.results.result"} <= set(RESULTS_MODULES)


@pytest.mark.parametrize("module", RESULTS_MODULES + SANS_IO)
def test_imports_no_native_code(module):
    assert loaded_by(module) == {"modules": [], "library_mapped": False}


def test_the_probe_sees_native_code():
    """The check above can fail: a module that does reach native code is seen."""
    seen = loaded_by("loadgen.run.stats")
    assert "loadgen.run.native" in seen["modules"]
    probe = subprocess.run([sys.executable, "-c", "from loadgen.run import native; native.lib();"
                            "print('/_native.' in open('/proc/self/maps').read())"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "True", probe.stderr
