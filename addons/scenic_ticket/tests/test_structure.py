"""How the modules hang together: no import cycles, no private imports
across modules, one error table that the OpenAPI description and the
booking page's JavaScript agree with. No database needed.
"""
import ast
import json
import pathlib
import re
import subprocess
import sys
import unittest

from trytond import backend

from ..errors import CODES, GATE_ONLY_CODES, ApiError
from ..openapi import openapi_document

# Source checks give the same answer on every backend: they run in the
# SQLite tier only (the PostgreSQL tier is the suite's longest).
SOURCE_ONLY = unittest.skipIf(backend.name == 'postgresql',
    "source check, run on SQLite")


ADDONS = pathlib.Path(__file__).resolve().parents[2]
# The packages whose internals must stay acyclic (add new ones here).
PACKAGES = ['scenic_ticket', 'scenic_gate', 'scenic_counter']
CLIENT_ONLY_CODES = {'network', 'unknown'}  # app.js's own, never the API's


def imports(package):
    """{module: {(imported module, name)}} of a package's modules, counting
    imports at any depth (a function-level import hides a cycle from the
    interpreter, not from the design)."""
    result = {}
    for path in sorted((ADDONS / package).glob('*.py')):
        module = package if path.stem == '__init__' else (
            f'{package}.{path.stem}')
        found = result.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package + (f'.{node.module}' if node.module else '')
            elif node.module and node.module.split('.')[0] in PACKAGES:
                base = node.module
            else:
                continue
            for alias in node.names:
                if base in PACKAGES:
                    # `from . import x`: the module x.
                    found.add((f'{base}.{alias.name}', None))
                else:
                    found.add((base, alias.name))
    return result


@SOURCE_ONLY
class StructureTestCase(unittest.TestCase):
    "Test the structure of the modules"

    def graph(self):
        graph = {}
        for package in PACKAGES:
            for module, found in imports(package).items():
                graph[module] = {m for m, _ in found if m != module}
        return graph

    def test_no_import_cycle(self):
        "The modules' imports, also inside functions, form no cycle"
        graph = self.graph()
        done, path = set(), []

        def visit(module):
            if module in path:
                cycle = path[path.index(module):] + [module]
                self.fail("import cycle: " + " -> ".join(cycle))
            if module in done or module not in graph:
                return
            path.append(module)
            for dependency in sorted(graph[module]):
                visit(dependency)
            path.pop()
            done.add(module)
        for module in sorted(graph):
            # A package's __init__ imports its routes: start from leaves.
            visit(module)

    def test_no_private_imports_across_modules(self):
        "No module imports another module's _private names"
        for package in PACKAGES:
            for module, found in imports(package).items():
                for source, name in found:
                    if name and name.startswith('_'):
                        with self.subTest(module=module):
                            self.fail(f"{module} imports {source}.{name}")

    def test_each_module_imports_alone(self):
        "Each module imports alone, without its package's __init__ first"
        script = '''
import importlib, sys, types
addons, package, module = sys.argv[1:]
for name in %r:
    stub = types.ModuleType(name)
    stub.__path__ = [f'{addons}/{name}']
    sys.modules[name] = stub
importlib.import_module(f'{package}.{module}')
''' % (PACKAGES,)
        for package in PACKAGES:
            for path in sorted((ADDONS / package).glob('*.py')):
                if path.stem == '__init__':
                    continue
                with self.subTest(module=f'{package}.{path.stem}'):
                    run = subprocess.run([sys.executable, '-c', script,
                            str(ADDONS), package, path.stem],
                        capture_output=True, text=True, timeout=120)
                    self.assertEqual(run.returncode, 0, run.stderr[-2000:])

    def test_openapi_error_enum_is_the_table(self):
        "The OpenAPI error enum is the code table's booking codes"
        enum = openapi_document()['components']['schemas']['Error'][
            'properties']['error']['properties']['code']['enum']
        self.assertEqual(enum, [c for c in CODES if c not in GATE_ONLY_CODES])

    def test_booking_page_knows_every_code(self):
        "The booking page's JavaScript translates every booking error code"
        source = (ADDONS / 'scenic_ticket' / 'static' / 'app.js').read_text()
        # Each language's dictionary lists its err_<code> keys.
        known = set(re.findall(r'^\s+err_([a-z_]+):', source, re.M))
        self.assertEqual(known - CLIENT_ONLY_CODES,
            set(CODES) - GATE_ONLY_CODES)
        for language in re.split(r'\n\s{4}[a-z]{2}(?:_[A-Z]{2})?: \{',
                source)[1:3]:
            codes = set(re.findall(r'^\s+err_([a-z_]+):', language, re.M))
            self.assertEqual(codes - CLIENT_ONLY_CODES,
                set(CODES) - GATE_ONLY_CODES)

    def test_error_codes_map_to_statuses(self):
        "Each code has one HTTP status; unknown codes are a programming error"
        for code, status in CODES.items():
            error = ApiError(code, "message", 'field')
            self.assertEqual(error.status, status)
            self.assertEqual(json.loads(json.dumps(error.as_json())),
                {'error': {'code': code, 'message': "message",
                        'field': 'field'}})
        with self.assertRaises(ValueError):
            ApiError('no_such_code', "message")


@SOURCE_ONLY
class StaticFilesTestCase(unittest.TestCase):
    "Test the booking pages' static files"

    def test_static_path_refuses_escapes(self):
        "Only the folder's visible asset files are served"
        from ..booking_page import static_path
        self.assertTrue(static_path('app.js').endswith('/static/app.js'))
        self.assertTrue(static_path('style.css'))
        for path in ['../booking_page.py', '..\\booking_page.py',
                '../../../pyproject.toml', '/etc/passwd', '.hidden.js',
                'missing.js', 'app.js\0.css', '', 'sub/../app.js',
                '../static/app.js', 'app.py', './app.js']:
            with self.subTest(path=path):
                self.assertIsNone(static_path(path))
