"""JsSIP for the page: 2.0.6's own browser bundle, or 3.x made into one script here.

npm's ``jssip@2.0.6`` (aliased ``jssip2`` in package.json) ships ``dist/jssip.js``, a browserify
bundle that defines ``window.JsSIP`` -- the file cometVideoApi.js is written against; it is served
as it is.  ``jssip@3`` ships only CommonJS modules (``lib/``), so :func:`commonjs_bundle` wraps them
into one classic script the way browserify does: every module file becomes a function of
``(require, module, exports)`` in a table, ``require`` resolves relative paths (``./x``, ``../x``,
``.js``/``.json``/``index.js``) and package names through ``node_modules`` (the package.json
``browser`` field first, then ``main``), and the entry's exports become ``window.JsSIP``.  Only
what JsSIP 3 and its three dependencies (debug, events, sdp-transform) need: no Node built-ins, no
dynamic requires, no source maps.  Built once per process and cached.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

__all__ = ["jssip_source", "commonjs_bundle", "node_modules", "BundleError"]

_REQUIRE_RE = re.compile(r"""\brequire\(\s*(['"])([^'"]+)\1\s*\)""")


class BundleError(RuntimeError):
    pass


def node_modules() -> Path:
    """The repository's node_modules (``make setup`` installs it); COMETBENCH_NODE_MODULES overrides."""
    import os

    explicit = os.environ.get("COMETBENCH_NODE_MODULES")
    if explicit:
        return Path(explicit)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "node_modules"
        if (candidate / "jssip2").is_dir() or (candidate / "jssip").is_dir():
            return candidate
    return Path.cwd() / "node_modules"


def _package_entry(package_dir: Path) -> Path:
    meta = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    browser = meta.get("browser")
    entry = browser if isinstance(browser, str) else meta.get("main", "index.js")
    return _resolve_file(package_dir / entry)


def _resolve_file(base: Path) -> Path:
    for candidate in (base, base.with_name(base.name + ".js"), base.with_name(base.name + ".json"),
                      base / "index.js"):
        if candidate.is_file():
            return candidate.resolve()
    raise BundleError(f"cannot resolve {base}")


def _resolve(spec: str, importer: Path, modules: Path) -> Path:
    if spec.startswith("./") or spec.startswith("../"):
        return _resolve_file(importer.parent / spec)
    name_parts = spec.split("/")
    name = "/".join(name_parts[:2]) if spec.startswith("@") else name_parts[0]
    rest = spec[len(name) + 1:] if len(spec) > len(name) else ""
    # nested node_modules first (npm may put a dependency under the package), then the top level
    for parent in importer.parents:
        candidate = parent / "node_modules" / name
        if candidate.is_dir():
            return _resolve_file(candidate / rest) if rest else _package_entry(candidate)
        if parent == modules.parent:
            break
    candidate = modules / name
    if candidate.is_dir():
        return _resolve_file(candidate / rest) if rest else _package_entry(candidate)
    raise BundleError(f"cannot find module {spec!r} (required by {importer})")


def commonjs_bundle(entry: Path, global_name: str, modules: Path) -> str:
    """One classic script defining ``window.<global_name>`` = the entry module's exports."""
    ids: dict[Path, int] = {}
    order: list[Path] = []
    maps: dict[int, dict[str, int]] = {}
    todo = [entry.resolve()]
    ids[todo[0]] = 0
    order.append(todo[0])
    while todo:
        current = todo.pop()
        source = current.read_text(encoding="utf-8")
        mapping: dict[str, int] = {}
        if current.suffix != ".json":
            for match in _REQUIRE_RE.finditer(source):
                spec = match.group(2)
                target = _resolve(spec, current, modules)
                if target not in ids:
                    ids[target] = len(order)
                    order.append(target)
                    todo.append(target)
                mapping[spec] = ids[target]
        maps[ids[current]] = mapping
    parts = ["(function(){\n'use strict';\nvar defs = {};\n"]
    for path in order:
        number = ids[path]
        source = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            body = "module.exports = " + source + ";"
        else:
            body = source
        parts.append(f"defs[{number}] = [function (require, module, exports) {{\n{body}\n}}, "
                     f"{json.dumps(maps[number])}];  // {path.name}\n")
    parts.append(
        "var cache = {};\n"
        "function load(id) {\n"
        "  if (cache[id]) { return cache[id].exports; }\n"
        "  var module = cache[id] = {exports: {}};\n"
        "  var def = defs[id];\n"
        "  def[0].call(module.exports, function (spec) {\n"
        "    if (!(spec in def[1])) { throw new Error('cometbench bundle: unknown module ' + spec); }\n"
        "    return load(def[1][spec]);\n"
        "  }, module, module.exports);\n"
        "  return module.exports;\n"
        "}\n"
        f"window.{global_name} = load(0);\n"
        "})();\n")
    return "".join(parts)


@lru_cache(maxsize=4)
def _cached(version: str, modules_dir: str) -> str:
    modules = Path(modules_dir)
    if version == "2.0.6":
        bundle = modules / "jssip2" / "dist" / "jssip.js"
        meta = modules / "jssip2" / "package.json"
        if not bundle.is_file() or json.loads(meta.read_text())["version"] != "2.0.6":
            raise BundleError(f"jssip 2.0.6 not found at {bundle} (run `npm ci` at the repository root)")
        return bundle.read_text(encoding="utf-8")
    if version == "3":
        package = modules / "jssip"
        meta = package / "package.json"
        if not meta.is_file() or not json.loads(meta.read_text())["version"].startswith("3."):
            raise BundleError(f"jssip 3.x not found at {package} (run `npm ci` at the repository root)")
        return commonjs_bundle(_package_entry(package), "JsSIP", modules)
    raise BundleError(f"unknown JsSIP version {version!r}: 2.0.6 or 3")


def jssip_source(version: str = "2.0.6", modules: Path | None = None) -> str:
    """The browser script for JsSIP ``version`` (``2.0.6`` or ``3``)."""
    return _cached(version, str(modules or node_modules()))
