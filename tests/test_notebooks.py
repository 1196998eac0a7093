"""Every analyst notebook runs on the demo database, with the history
`make demo` simulates (scripts/simulate_history.py), and prints its key
figure. Outputs are never written back: notebooks/ stays stripped in git."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
# `make demo` (scripts/demo.py prepare) simulates 30 days of history.
HISTORY_DAYS = 28


@pytest.fixture(scope='module')
def history_db(demo_server):
    "The demo database the tests built, with its simulated history."
    if demo_server.db is None:
        pytest.skip("needs the demo's SQLite file")
    return demo_server.db


def test_there_are_at_least_five_notebooks_and_they_are_stripped():
    import nbformat
    assert len(NOTEBOOKS) >= 5
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == 'code':
                assert not cell.outputs and cell.execution_count is None, \
                    f"{path.name}: outputs must be stripped"
        assert 'parameters' in nb.cells[1].metadata.get('tags', []), \
            path.name


# On PostgreSQL, the notebooks that between them call most of the reports
# (a kernel costs ~20 s here); test_dashboards runs the other notebooks'
# reports on PostgreSQL in-process.
ON_POSTGRESQL = {'01_arrivals_and_dwell', '05_revenue_recognised_vs_cash',
    '06_forecast_tomorrow'}


@pytest.mark.parametrize('path, backend',
    [(p, 'sqlite') for p in NOTEBOOKS]
    + [(p, 'postgresql') for p in NOTEBOOKS if p.stem in ON_POSTGRESQL],
    ids=lambda v: getattr(v, 'stem', v))
def test_notebook_runs_and_shows_its_key_figure(path, backend, request,
        monkeypatch):
    """On the demo's SQLite file, and on its copy in PostgreSQL read
    through the read-only reporting role (tests/pg_history.py)."""
    import nbformat
    from nbclient import NotebookClient
    if backend == 'sqlite':
        url = f'sqlite:///{request.getfixturevalue("history_db")}'
    else:
        url = request.getfixturevalue('pg_history').url
    monkeypatch.setenv('SCENIC_ANALYTICS_DB', url)
    monkeypatch.setenv('SCENIC_ANALYTICS_DAYS', str(HISTORY_DAYS))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name='python3',
        resources={'metadata': {'path': str(path.parent)}}).execute()
    text = '\n'.join(output.get('text', '')
        for cell in nb.cells if cell.cell_type == 'code'
        for output in cell.outputs if output.get('output_type') == 'stream')
    match = re.search(r'KEY FIGURE (.+): (\S+)', text)
    assert match, text[-2000:]
    conclusion = nb.cells[-1].outputs
    assert any('text/markdown' in o.get('data', {}) for o in conclusion), \
        "the conclusion is computed and shown"
