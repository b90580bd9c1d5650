"""``cdyb-jxc scaffold DIR``: what an existing Airflow needs to run the packaged DAGs (no Airflow import).

Writes, under ``DIR`` (typically ``$AIRFLOW_HOME``):

- ``dags/cdyb_jxc_dags.py``: a DAG file of a few lines building every institution's DAGs;
- ``cdyb_jxc.yaml``: an example deployment file, commented;
- ``cdyb_jxc_sql/*.sql``: the SQL templates, to adapt to the hospital's HIS.

Existing files are left alone unless ``--force`` is given (exit 1 names them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cdyb_jxc.deployment import CONFIG_FILE, PACKAGED_SQL, SQL_TEMPLATES

SCAFFOLD = Path(__file__).resolve().parent.parent / "data" / "scaffold"
DAG_FILE = "cdyb_jxc_dags.py"
SQL_FOLDER = "cdyb_jxc_sql"
SQL_NOTE = """\
-- cdyb-jxc SQL template, written by `cdyb-jxc scaffold`: adapt it to your HIS.
-- Each column must carry the profile's logical name (the AS names below); columns the centre does not need
-- may be left out. {{ business_date }} is day D (YYYY-MM-DD): select that business day only. The upload
-- runs it on the institution's source_conn_id (cdyb_jxc.yaml) and checks every row before it sends any.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "scaffold",
        help="write a DAG file, an example cdyb_jxc.yaml and the SQL templates into an Airflow home",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("dir", metavar="DIR", help="where to write them, e.g. $AIRFLOW_HOME")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.set_defaults(func=run_scaffold)


def files(root: Path) -> dict[Path, str]:
    """What the scaffold writes under ``root``: path → text."""
    out = {
        root / "dags" / DAG_FILE: (SCAFFOLD / f"{DAG_FILE}.tmpl").read_text(encoding="utf-8"),
        root / CONFIG_FILE: (SCAFFOLD / CONFIG_FILE).read_text(encoding="utf-8"),
    }
    for name in SQL_TEMPLATES:
        out[root / SQL_FOLDER / name] = SQL_NOTE + (PACKAGED_SQL / name).read_text(encoding="utf-8")
    return out


def run_scaffold(args: argparse.Namespace) -> int:
    root = Path(args.dir).expanduser()
    planned = files(root)
    existing = [path for path in planned if path.exists()]
    if existing and not args.force:
        names = ", ".join(str(p) for p in existing)
        print(f"cdyb-jxc scaffold: {names} exist; nothing written (--force overwrites)", file=sys.stderr)
        return 1
    for path, text in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    print(
        f"next: edit {root / CONFIG_FILE} and the SQL in {root / SQL_FOLDER}, create each institution's "
        f"connections, then `airflow dags list`. Airflow reads the file from $AIRFLOW_HOME/{CONFIG_FILE} "
        f"or $CDYB_JXC_CONFIG, and the DAG file from its dags folder."
    )
    return 0
