"""Demo on embedded defaults: serve the simulator, seed it, send one day of each transaction, dump the store.

Run through ``bash scripts/demo.sh``. The Airflow DAG demo replaces this once the DAGs exist (issue 4).
"""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import zeep

from cdyb_jxc.codec import build_requests, parse_reply
from cdyb_jxc.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "demo"
INSTITUTION, USER, CODE = "H51010400001", "demo_his", "demo-test-code"


def _item(i: int) -> dict[str, str]:
    return {
        "insurance_item_code": f"XB{i:08d}",
        "hospital_item_name": ["阿莫西林胶囊", "布洛芬缓释胶囊", "头孢克肟片", "艾司唑仑片(含䓬)"][i % 4]
        + f"{i}",
        "mapping_serial_no": f"DZ{i:06d}",
        "split_flag": "1" if i % 3 == 0 else "0",
        "pack_ratio": "24" if i % 3 == 0 else None,
        "unit": "粒" if i % 3 == 0 else "盒",
    }


def main() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    db = VAR / "simulator.db"
    db.unlink(missing_ok=True)
    mapping = VAR / "mapping.csv"
    with mapping.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["institution_code", "mapping_serial_no", "insurance_item_code", "off_hospital_delivery"])
        w.writerows([INSTITUTION, f"DZ{i:06d}", f"XB{i:08d}", int(i % 25 == 0)] for i in range(1, 50))
    cli = [sys.executable, "-m", "cdyb_jxc", "simulator"]
    inst = ROOT / "include" / "demo" / "institutions.csv"
    subprocess.run(
        [*cli, "seed", "--db", str(db), "--institutions", str(inst), "--mapping", str(mapping)], check=True
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (VAR / "simulator.log").open("w")
    server = subprocess.Popen([*cli, "serve", "--port", str(port), "--db", str(db)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/services/SjcjService"
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}?wsdl", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.1)
        client = zeep.Client(f"{url}?wsdl")
        profile = load_profile()
        day = "2026-11-20"
        sources = {
            "init": [
                {
                    "serial_no": f"CSH{i:05d}",
                    **_item(i),
                    "purchase_price": "3.5",
                    "quantity": 200,
                    "event_time": "2026-11-01 08:00:00",
                }
                for i in range(1, 50)
            ],
            "inbound": [
                {
                    "serial_no": f"RK{i:05d}",
                    **_item(i),
                    "inbound_type": "11",
                    "purchase_price": 3.5,
                    "quantity": 100,
                    "event_time": f"{day} 09:00:00",
                    "supplier_name": "国药控股",
                    "lot_no": "B2611",
                    "expiry_date": "2028-10-31",
                }
                for i in range(1, 40)
            ],
            "outbound": [
                {
                    "serial_no": f"CK{i:05d}",
                    **_item(i % 55),
                    "outbound_type": "21",
                    "sale_price": "4.2",
                    "quantity": 2,
                    "event_time": f"{day} 10:00:00",
                }
                for i in range(1, 180)
            ],
            "stock": [
                {"serial_no": f"KC{day}{i:05d}", **_item(i), "stock_date": day, "stock_quantity": 298}
                for i in range(1, 50)
            ],
        }
        print(f"{'transaction':<10} {'sent':>5} {'accepted':>8} {'rejected':>8}  first rejection")
        for key, rows in sources.items():
            txn = profile.transaction(key)
            sent = ok = bad = 0
            first = ""
            for xml in build_requests(
                profile, txn, rows, user=USER, verification_code=CODE, institution_code=INSTITUTION
            ):
                reply = parse_reply(profile, client.service.callBusiness(inputXml=xml))
                n = xml.count("<row>")
                sent += n
                bad += len(reply.failures) if not reply.whole_call_rejected else n
                ok += n - (len(reply.failures) if not reply.whole_call_rejected else n)
                if reply.failures and not first:
                    first = f"{reply.failures[0].serial_no}: {reply.failures[0].message}"
            print(f"{txn.code:<10} {sent:>5} {ok:>8} {bad:>8}  {first}")
        dump = subprocess.run(
            [*cli, "dump", "--db", str(db)], capture_output=True, text=True, check=True
        ).stdout
        stored = len(list(csv.DictReader(io.StringIO(dump))))
        print(f"simulator store holds {stored} accepted rows ({db})")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
