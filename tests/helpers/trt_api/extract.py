"""Extract the TensorRT Python API this project touches from TensorRT's public bindings source.

The test fakes (``tests/helpers/trt_api/fake.py``) are built from the JSON files this writes, one per
TensorRT version, so a fake never has an attribute the real module lacks (or the reverse).

Sources, read at a git ref of https://github.com/NVIDIA/TensorRT:

* ``python/src/infer/py*.cpp`` and ``python/src/parsers/pyOnnx.cpp``: the pybind11 bindings
  (``py::class_`` / ``py::enum_`` declarations and their chained ``.def*`` / ``.value`` calls);
* ``include/Nv*.h``: the numeric value of each bound enum member;
* ``python/packaging/bindings_wheel/tensorrt/__init__.py``: module-level Python helpers (``nptype``);
* ``VERSION``: the version string.

Regenerate (with a local clone or mirror of the repository)::

    python tests/helpers/trt_api/extract.py --git /path/to/TensorRT \\
        release/10.8=tests/helpers/trt_api/10.8.json release/10.13=tests/helpers/trt_api/10.13.json \\
        main=tests/helpers/trt_api/11.x.json

Only the standard library is used; ``#if`` blocks are all taken as compiled in (the full
``tensorrt`` wheel is built with ``EXPORT_ALL_BINDINGS``).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BINDINGS = {  # binding file -> headers that hold its enums (first match wins)
    "python/src/infer/pyFoundationalTypes.cpp": ("NvInferRuntimeBase.h", "NvInferRuntimeCommon.h",
                                                 "NvInferRuntime.h", "NvInfer.h", "NvInferLegacyDims.h"),
    "python/src/infer/pyCore.cpp": ("NvInferRuntime.h", "NvInfer.h", "NvInferRuntimeBase.h",
                                    "NvInferRuntimeCommon.h"),
    "python/src/infer/pyGraph.cpp": ("NvInfer.h", "NvInferRuntime.h", "NvInferRuntimeBase.h"),
    "python/src/parsers/pyOnnx.cpp": ("NvOnnxParser.h",),
}
PY_INIT = "python/packaging/bindings_wheel/tensorrt/__init__.py"

# What engines/ touches (and the fakes need). Everything else of the bindings is left out.
CLASSES = ("ILogger", "Logger", "Builder", "IBuilderConfig", "INetworkDefinition", "OnnxParser", "ParserError",
           "IOptimizationProfile", "ITimingCache", "IHostMemory", "Dims", "Runtime", "ICudaEngine",
           "IExecutionContext")
ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "HardwareCompatibilityLevel", "MemoryPoolType",
         "TensorIOMode", "DataType", "ILogger.Severity")
FUNCTIONS = ("nptype",)


@dataclass
class Binding:
    kind: str  # "class" | "enum"
    name: str  # Python name (nested enums: "Outer.Inner")
    cpp: str  # C++ type as written in the template argument
    bases: list[str] = field(default_factory=list)
    attrs: dict[str, list[list[str]] | None] = field(default_factory=dict)  # method -> overloads
    members: dict[str, str] = field(default_factory=dict)  # enum: Python name -> C++ enumerator
    exported: bool = False  # enum .export_values(): members also on the enclosing scope
    headers: tuple[str, ...] = ()


def strip_comments(text: str) -> str:
    """C++ source without // and /* */ comments (string and char literals kept intact)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def statement_end(text: str, start: int) -> int:
    """Index of the ``;`` that ends the statement starting at ``start`` (depth-0, outside literals)."""
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == ";" and depth == 0:
            return i
        i += 1
    return n


def _literal_end(text: str, i: int) -> int:
    """Index just after the string or char literal that starts at ``i``."""
    quote, j = text[i], i + 1
    while j < len(text) and text[j] != quote:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _close(text: str, start: int) -> int:
    """Index just after the bracket that closes the one opened before ``start``."""
    depth, i, n = 1, start, len(text)
    while i < n and depth:
        c = text[i]
        if c in "\"'":
            i = _literal_end(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return i


def split_args(text: str) -> list[str]:
    """The depth-0, comma-separated arguments of a call's argument text."""
    args, depth, i, cur = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _literal_end(text, i)
            continue
        if c in "([{<" and not (c == "<" and text[i - 1:i + 1] == "<<"):
            depth += 1 if c != "<" or re.match(r"[\w:]", text[i - 1:i] or " ") else 0
        elif c in ")]}>" and depth:
            depth -= 1 if c != ">" or text[i - 1:i] != "-" else 0
        elif c == "," and depth == 0:
            args.append(text[cur:i].strip())
            cur = i + 1
        i += 1
    args.append(text[cur:].strip())
    return [a for a in args if a]


def depth0_calls(text: str) -> list[tuple[str, list[str]]]:
    """(method, arguments) of each call chained at depth 0 in a statement: ``.def("x", ...)``."""
    calls = []
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            i = _literal_end(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "." and depth == 0:
            m = re.match(r"\.\s*(\w+)\s*\(", text[i:])
            if m:
                arg_start = i + m.end()
                arg_end = _close(text, arg_start)
                calls.append((m.group(1), split_args(text[arg_start:arg_end - 1])))
                i = arg_end
                continue
        i += 1
    return calls


NAMED_ARG = re.compile(r'^(?:"(?P<a>\w+)"_a|py::arg\(\s*"(?P<b>\w+)"\s*\))\s*(?P<default>=)?')


def signature(args: list[str]) -> list[str]:
    """The named parameters of a ``.def`` (``"x"_a`` / ``py::arg("x")``); ``name=`` when defaulted."""
    names = []
    for arg in args:
        m = NAMED_ARG.match(arg)
        if m:
            names.append((m.group("a") or m.group("b")) + ("=" if m.group("default") else ""))
    return names


DECL = re.compile(r"py::(class_|enum_)\s*<\s*(?P<targs>[^;{}()]*?)>\s*(?P<var>\w+)?\s*[({]\s*(?P<scope>\w+)\s*,"
                  r"\s*\"(?P<name>\w+)\"")


def _template_args(targs: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in targs:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _apply_calls(binding: Binding, calls: list[tuple[str, list[str]]]) -> None:
    for method, args in calls:
        name = re.fullmatch(r"\"(\w+)\"", args[0]) if args else None
        if method == "value" and name:
            binding.members[name.group(1)] = args[1].split("::")[-1] if len(args) > 1 else ""
        elif method == "export_values":
            binding.exported = True
        elif method in ("def", "def_static") and name:
            overloads = binding.attrs.get(name.group(1)) or []
            binding.attrs[name.group(1)] = [*overloads, signature(args[1:])]
        elif method.startswith("def_") and name:  # def_property*, def_readwrite, def_readonly
            binding.attrs[name.group(1)] = None
        elif method == "def" and args and args[0].startswith("py::init"):
            init = re.match(r"py::init\s*\(\s*\[\]\s*\((?P<params>[^)]*)\)", args[0])
            params = [p.split()[-1].strip("&*") for p in init.group("params").split(",")] if init else []
            named = signature(args[1:])
            overloads = binding.attrs.get("__init__") or []
            binding.attrs["__init__"] = [*overloads, named or [p for p in params if p]]


def parse_bindings(sources: dict[str, str]) -> tuple[dict[str, Binding], set[str]]:
    """Every ``py::class_`` / ``py::enum_`` of the binding files, and the module-level ``m.def`` names."""
    bindings: dict[str, Binding] = {}
    module_functions: set[str] = set()
    for path, raw in sources.items():
        text = strip_comments(raw)
        variables: dict[str, Binding] = {}
        for match in DECL.finditer(text):
            kind = "class" if match.group(1) == "class_" else "enum"
            targs = _template_args(match.group("targs"))
            scope, name = match.group("scope"), match.group("name")
            if scope != "m" and scope in variables:
                name = f"{variables[scope].name}.{name}"
                variables[scope].attrs[match.group("name")] = None
            binding = Binding(kind, name, targs[0], headers=BINDINGS[path])
            if kind == "class":
                binding.bases = [t for t in targs[1:] if not t.startswith(("std::", "py::"))]
            end = statement_end(text, match.start())
            decl_close = _close(text, match.end())
            _apply_calls(binding, depth0_calls(text[decl_close:end]))
            bindings[name] = binding
            if match.group("var"):
                variables[match.group("var")] = binding
        for var, binding in variables.items():  # ``var.def(...)...;`` statements
            for stmt in re.finditer(rf"(?<![\w.]){re.escape(var)}\s*(?=\.)", text):
                end = statement_end(text, stmt.end())
                _apply_calls(binding, depth0_calls(text[stmt.end():end]))
        for fn in re.finditer(r"(?<![\w.])m\s*\.\s*def\s*\(\s*\"(\w+)\"", text):
            module_functions.add(fn.group(1))
    return bindings, module_functions


ENUM_DECL = re.compile(r"enum\s+class\s+(\w+)\s*(?::\s*[\w:]+\s*)?\{(?P<body>[^}]*)\}")


def parse_enum_values(header_text: str) -> dict[str, dict[str, int | None]]:
    """``enum class`` name -> enumerator -> value, from a header (implicit values counted)."""
    enums: dict[str, dict[str, int | None]] = {}
    for match in ENUM_DECL.finditer(strip_comments(header_text)):
        values: dict[str, int | None] = {}
        previous: int | None = -1
        for item in match.group("body").split(","):
            item = re.sub(r"\bTRT_\w+\b", "", item).strip()
            if not item:
                continue
            name, _, expr = item.partition("=")
            name, expr = name.strip(), expr.strip()
            implicit = None if previous is None else previous + 1
            previous = _evaluate(expr, values) if expr else implicit
            values[name] = previous
        enums.setdefault(match.group(1), values)
    return enums


def _evaluate(expr: str, known: dict[str, int | None]) -> int | None:
    expr = re.sub(r"(?<=\d)[uUlL]+\b", "", expr)
    expr = re.sub(r"\b\w+::", "", expr)
    expr = re.sub(r"static_cast<[^>]*>", "", expr)
    for name, value in known.items():
        if value is not None:
            expr = re.sub(rf"\b{re.escape(name)}\b", str(value), expr)
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.LShift, ast.BitOr, ast.Add, ast.Sub,
               ast.USub, ast.Mult)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        return None
    value = eval(compile(tree, "<enum>", "eval"), {"__builtins__": {}})  # only arithmetic nodes
    return value if isinstance(value, int) else None


def _inherited(name: str, bindings: dict[str, Binding], by_cpp: dict[str, str],
               seen: set[str]) -> dict[str, list[list[str]] | None]:
    binding = bindings[name]
    attrs: dict[str, list[list[str]] | None] = {}
    for base in binding.bases:
        base_name = by_cpp.get(base.split("::")[-1])
        if base_name and base_name not in seen:
            attrs.update(_inherited(base_name, bindings, by_cpp, seen | {name}))
    for enum in bindings.values():
        if enum.kind == "enum" and enum.exported and enum.name.startswith(f"{name}."):
            attrs.update(dict.fromkeys(enum.members))
    attrs.update(binding.attrs)
    return dict(sorted(attrs.items()))


def python_signatures(init_text: str) -> dict[str, list[str]]:
    """Top-level ``def`` names and parameters of the wheel's ``__init__.py`` template."""
    text = re.sub(r"##\w+##", "tensorrt", init_text)
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            args = node.args
            defaults = len(args.defaults)
            names = [a.arg for a in args.args]
            out[node.name] = [n + ("=" if i >= len(names) - defaults else "") for i, n in enumerate(names)]
    return out


def extract(read: dict[str, str], version: str, source: dict[str, str]) -> dict[str, object]:
    """The API record for one version, from the file texts in ``read`` (path -> text)."""
    bindings, module_functions = parse_bindings({p: read[p] for p in BINDINGS})
    header_enums: dict[str, dict[str, dict[str, int | None]]] = {
        h: parse_enum_values(read.get(f"include/{h}", "")) for hs in BINDINGS.values() for h in hs}
    by_cpp = {b.cpp.split("::")[-1]: name for name, b in bindings.items() if b.kind == "class"}
    py_functions = python_signatures(read[PY_INIT])
    module = {n for n in bindings if "." not in n} | module_functions | set(py_functions)
    classes = {name: _inherited(name, bindings, by_cpp, set())
               for name in CLASSES if name in bindings and bindings[name].kind == "class"}
    enums: dict[str, dict[str, int | None]] = {}
    for name in ENUMS:
        binding = bindings.get(name)
        if binding is None or binding.kind != "enum":
            continue
        cpp_enum = binding.cpp.split("::")[-1]
        values = next((header_enums[h][cpp_enum] for h in binding.headers if cpp_enum in header_enums[h]), {})
        enums[name] = {py: values.get(cpp) for py, cpp in binding.members.items()}
    return {
        "tensorrt": version,
        "source": source,
        "module": {"present": [n for n in (*CLASSES, *(e for e in ENUMS if "." not in e), *FUNCTIONS)
                               if n in module],
                   "absent": [n for n in (*CLASSES, *(e for e in ENUMS if "." not in e), *FUNCTIONS)
                              if n not in module]},
        "classes": classes,
        "bases": {name: [by_cpp[b.split("::")[-1]] for b in bindings[name].bases if b.split("::")[-1] in by_cpp]
                  for name in classes if any(b.split("::")[-1] in by_cpp for b in bindings[name].bases)},
        "enums": enums,
        "functions": {name: [py_functions[name]] if name in py_functions else None
                      for name in FUNCTIONS if name in module},
    }


def read_git(git_dir: str, ref: str) -> tuple[dict[str, str], str, str]:
    """(path -> text, version, commit) of the files we read, at ``ref`` of a TensorRT clone or mirror."""
    def show(path: str) -> str:
        result = subprocess.run(["git", "--git-dir" if Path(git_dir, "HEAD").is_file() else "-C", git_dir,
                                 "show", f"{ref}:{path}"], capture_output=True, text=True, check=False)
        return result.stdout if result.returncode == 0 else ""

    paths = [*BINDINGS, PY_INIT, *(f"include/{h}" for hs in BINDINGS.values() for h in hs)]
    files = {p: show(p) for p in dict.fromkeys(paths)}
    missing = [p for p in [*BINDINGS, PY_INIT] if not files[p]]
    if missing:
        raise SystemExit(f"{ref}: missing {missing} in {git_dir}")
    commit = subprocess.run(["git", "--git-dir" if Path(git_dir, "HEAD").is_file() else "-C", git_dir,
                             "rev-parse", ref], capture_output=True, text=True, check=True).stdout.strip()
    return files, show("VERSION").strip(), commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--git", required=True, help="a clone (or bare mirror) of github.com/NVIDIA/TensorRT")
    parser.add_argument("targets", nargs="+", metavar="REF=OUT.json")
    args = parser.parse_args(argv)
    for target in args.targets:
        ref, _, out = target.partition("=")
        files, version, commit = read_git(args.git, ref)
        record = extract(files, version, {"repository": "https://github.com/NVIDIA/TensorRT", "ref": ref,
                                          "commit": commit})
        Path(out).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"{out}: TensorRT {version} ({ref} @ {commit[:12]}), {len(record['classes'])} classes, "  # type: ignore[arg-type]
              f"{len(record['enums'])} enums", file=sys.stderr)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
