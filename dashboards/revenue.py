"""The Revenue page: `panel serve dashboards/revenue.py` (see scenic_dashboards.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenic_dashboards import page  # noqa: E402

page('revenue').servable()
