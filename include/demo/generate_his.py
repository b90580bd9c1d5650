"""Generate a realistic demo HIS database (SQLite) for cdyb-jxc.

About 1,500 drug items with 对码 entries (a few left unmapped, 2–5 % 院外配送), an opening stock
count, N days of inbound (purchases, 盘盈, patient returns), outbound (outpatient and inpatient dispensing
with 拆零, 科室领用, 盘损, 报损) and daily stock, plus some dirty rows (over-long names, characters GBK
cannot hold, missing fields) so that rejections really happen. The SQL templates in ``include/sql/``
map these tables to the profile's logical names.

    python include/demo/generate_his.py --db his.db --mapping mapping.csv --days 30 --end 2026-11-24
"""

from __future__ import annotations

import argparse
import csv
import random
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

INSTITUTION = "H51010400001"
SCHEMA = """
CREATE TABLE drug (
    drug_id INTEGER PRIMARY KEY, his_code TEXT NOT NULL, name TEXT, spec TEXT, pack_unit TEXT, min_unit TEXT,
    pack_ratio INTEGER, mapping_serial_no TEXT, insurance_item_code TEXT, off_hospital INTEGER,
    manufacturer TEXT, approval_no TEXT, price REAL
);
CREATE TABLE opening_stock (
    drug_id INTEGER, lot_no TEXT, expiry_date TEXT, qty REAL, price REAL, counted_at TEXT,
    dept_reserve INTEGER
);
CREATE TABLE inbound_bill (
    bill_no TEXT, line_no INTEGER, drug_id INTEGER, kind TEXT, qty REAL, price REAL, at TEXT, supplier TEXT,
    delivery_note TEXT, invoice TEXT, lot_no TEXT, expiry_date TEXT, return_of TEXT, operator TEXT
);
CREATE TABLE outbound_bill (
    bill_no TEXT, line_no INTEGER, drug_id INTEGER, kind TEXT, split INTEGER, qty REAL, price REAL, at TEXT,
    dept_code TEXT, dept_name TEXT, visit_no TEXT, rx_no TEXT, lot_no TEXT, expiry_date TEXT, operator TEXT
);
CREATE TABLE stock_snapshot (day TEXT, drug_id INTEGER, qty REAL, price REAL);
CREATE INDEX outbound_day ON outbound_bill (substr(at, 1, 10));
CREATE INDEX inbound_day ON inbound_bill (substr(at, 1, 10));
"""

NAMES = [
    "阿莫西林胶囊",
    "布洛芬缓释胶囊",
    "头孢克肟片",
    "盐酸二甲双胍片",
    "硝苯地平控释片",
    "阿托伐他汀钙片",
    "奥美拉唑肠溶胶囊",
    "氯雷他定片",
    "蒙脱石散",
    "复方甘草片",
    "维生素C片",
    "葡萄糖注射液",
    "氯化钠注射液",
    "头孢曲松钠注射剂",
    "左氧氟沙星片",
    "甲硝唑片",
    "阿司匹林肠溶片",
    "氨氯地平片",
    "辛伐他汀片",
    "胰岛素注射液",
]
MAKERS = ["华北制药", "石药集团", "齐鲁制药", "扬子江药业", "科伦药业", "恒瑞医药", "太极集团"]
SUPPLIERS = ["国药控股四川医药股份有限公司", "四川科伦医药贸易集团有限公司", "重药控股四川有限公司"]
DEPTS = [("NK01", "心内科"), ("WK02", "普外科"), ("EK03", "儿科"), ("JZ04", "急诊科")]
OPERATORS = ["张敏", "李强", "王芳", "刘洋"]


def _items(rng: random.Random, count: int) -> list[tuple]:
    items = []
    for i in range(1, count + 1):
        base = NAMES[i % len(NAMES)]
        name = f"{base}({rng.choice(['0.25g', '0.5g', '10mg', '20mg', '100ml'])})#{i}"
        if i % 397 == 0:
            name = "艾司唑仑片(含䓬类)" + f"#{i}"  # a character GBK cannot hold
        if i % 499 == 0:
            name = "复方" * 60 + f"#{i}"  # 240 GBK bytes > 200
        ratio = rng.choice([10, 12, 20, 24, 30, 48])
        mapping = f"DZ{i:06d}"
        code = f"XB{i:08d}"
        items.append(
            (
                i,
                f"YP{i:05d}",
                name,
                f"{ratio}粒/盒",
                "盒",
                "粒",
                ratio,
                mapping,
                code,
                1 if rng.random() < 0.035 else 0,
                rng.choice(MAKERS),
                f"国药准字H{rng.randrange(10**7, 10**8)}",
                round(rng.uniform(2, 180), 2),
            )
        )
    return items


def _write_mapping(mapping_csv: Path, drugs: list[tuple], unmapped: set[int]) -> None:
    """The 对码 CSV: every item except the ``unmapped`` ones."""
    with mapping_csv.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["institution_code", "mapping_serial_no", "insurance_item_code", "off_hospital_delivery"])
        w.writerows([INSTITUTION, d[7], d[8], d[9]] for d in drugs if d[0] not in unmapped)


def _opening_stock(rng: random.Random, drugs: list[tuple], start: date) -> tuple[dict[int, int], list[tuple]]:
    """Stock counted the evening before ``start``: quantity per item, and the opening rows."""
    counted_at = datetime.combine(start - timedelta(days=1), datetime.min.time()) + timedelta(hours=18)
    stock = {}
    opening = []
    for d in drugs:
        qty = rng.randrange(20, 400)
        stock[d[0]] = qty
        lot = f"L{rng.randrange(100000, 999999)}"
        expiry = (start + timedelta(days=rng.randrange(200, 900))).isoformat()
        opening.append((d[0], lot, expiry, qty, d[12], counted_at.strftime("%Y-%m-%d %H:%M:%S"), 0))
        if rng.random() < 0.1:  # 科室备用药品: counted in the wards, excluded from the upload
            opening.append(
                (d[0], lot, expiry, rng.randrange(1, 10), d[12], counted_at.strftime("%Y-%m-%d %H:%M:%S"), 1)
            )
    return stock, opening


def generate(
    db: Path,
    mapping_csv: Path,
    *,
    days: int = 30,
    end: date | None = None,
    items: int = 1500,
    seed: int = 20261125,
    outbound_per_day: int = 1200,
) -> dict[str, int]:
    """Write the HIS database and the 对码 CSV for the simulator. Returns row counts per table."""
    rng = random.Random(seed)
    end = end or (datetime.utcnow() + timedelta(hours=8)).date() - timedelta(days=1)
    start = end - timedelta(days=days - 1)
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript(SCHEMA)
    drugs = _items(rng, items)
    conn.executemany("INSERT INTO drug VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", drugs)
    unmapped = {d[0] for d in drugs if d[0] % 300 == 7}  # a few items whose 对码 is not done yet
    _write_mapping(mapping_csv, drugs, unmapped)
    stock, opening = _opening_stock(rng, drugs, start)
    conn.executemany("INSERT INTO opening_stock VALUES (?,?,?,?,?,?,?)", opening)
    inbound, outbound, snapshots = [], [], []
    dispensed: list[tuple[str, int]] = []
    for n in range(days):
        day = start + timedelta(days=n)
        stamp = day.strftime("%Y%m%d")

        def at(hour_from: int = 8, hour_to: int = 20, _day: date = day) -> str:
            t = datetime.combine(_day, datetime.min.time()) + timedelta(
                seconds=rng.randrange(hour_from * 3600, hour_to * 3600)
            )
            return t.strftime("%Y-%m-%d %H:%M:%S")

        for b in range(rng.randrange(3, 7)):  # purchase deliveries
            supplier = rng.choice(SUPPLIERS)
            for line, d in enumerate(rng.sample(drugs, rng.randrange(10, 30)), 1):
                qty = rng.randrange(5, 60)
                stock[d[0]] += qty
                inbound.append(
                    (
                        f"RK{stamp}{b:03d}",
                        line,
                        d[0],
                        "11",
                        qty,
                        d[12],
                        at(9, 17),
                        None if rng.random() < 0.004 else supplier,
                        f"SH{stamp}{b:03d}",
                        f"FP{rng.randrange(10**7, 10**8)}",
                        f"L{rng.randrange(100000, 999999)}",
                        (day + timedelta(days=rng.randrange(300, 900))).isoformat(),
                        None,
                        rng.choice(OPERATORS),
                    )
                )
        lines, sold_before = 0, len(dispensed)
        for b in range(outbound_per_day // 4):
            kind = rng.choices(["21", "22", "23", "24", "25"], [60, 32, 5, 2, 1])[0]
            dept = rng.choice(DEPTS)
            for line in range(1, rng.randrange(2, 7)):
                d = drugs[rng.randrange(len(drugs))]
                split = 1 if kind in ("21", "22") and rng.random() < 0.35 else 0
                qty = rng.randrange(1, 30) if split else rng.randrange(1, 4)
                stock[d[0]] -= qty / (d[6] if split else 1)
                price = round(d[12] / d[6], 4) if split else d[12]
                bill = f"CK{stamp}{b:05d}"
                if rng.random() < 0.002:
                    stock[d[0]] += qty / (d[6] if split else 1)  # nothing left the shelf
                    qty = 0  # a dirty row: zero quantity
                outbound.append(
                    (
                        bill,
                        line,
                        d[0],
                        kind,
                        split,
                        qty,
                        price,
                        at(),
                        dept[0] if kind == "23" else None,
                        dept[1] if kind == "23" else None,
                        f"MZ{stamp}{b:05d}"
                        if kind == "21"
                        else f"ZY{stamp}{b:05d}"
                        if kind == "22"
                        else None,
                        f"CF{stamp}{b:05d}" if kind in ("21", "22") else None,
                        None,
                        None,
                        rng.choice(OPERATORS),
                    )
                )
                if kind == "21":
                    dispensed.append((f"{bill}-{line}", d[0]))
                lines += 1
        for r in range(rng.randrange(1, 4)):  # patient returns of earlier dispensing (JXC002 rklx=15)
            if dispensed:
                serial, drug_id = dispensed[rng.randrange(len(dispensed))]
                stock[drug_id] += 1
                inbound.append(
                    (
                        f"TY{stamp}{r:03d}",
                        1,
                        drug_id,
                        "15",
                        1,
                        drugs[drug_id - 1][12],
                        at(10, 18),
                        None,
                        None,
                        None,
                        f"L{rng.randrange(100000, 999999)}",
                        (day + timedelta(days=400)).isoformat(),
                        serial,
                        rng.choice(OPERATORS),
                    )
                )
        _same_day_return(inbound, dispensed[sold_before:], stock, drugs, day)
        d = drugs[rng.randrange(len(drugs))]
        stock[d[0]] += 2
        inbound.append(
            (
                f"PY{stamp}",
                1,
                d[0],
                "13",
                2,
                d[12],
                at(17, 18),
                None,
                None,
                None,
                "L000001",
                (day + timedelta(days=365)).isoformat(),
                None,
                "盘点组",
            )
        )  # 盘盈
        snapshots += _snapshots(drugs, stock, day, last=n == days - 1)
    conn.executemany("INSERT INTO inbound_bill VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inbound)
    conn.executemany("INSERT INTO outbound_bill VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", outbound)
    conn.executemany("INSERT INTO stock_snapshot VALUES (?,?,?,?)", snapshots)
    conn.commit()
    conn.close()
    return {
        "drug": len(drugs),
        "opening_stock": len(opening),
        "inbound_bill": len(inbound),
        "outbound_bill": len(outbound),
        "stock_snapshot": len(snapshots),
        "unmapped": len(unmapped),
        "first_day": start.toordinal(),
        "last_day": end.toordinal(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--mapping", required=True, type=Path, help="对码 CSV for `cdyb-jxc simulator seed`")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--end", type=date.fromisoformat, default=None, help="last business day (default: yesterday)"
    )
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    counts = generate(args.db, args.mapping, days=args.days, end=args.end, items=args.items, seed=args.seed)
    print(", ".join(f"{k}={v}" for k, v in counts.items() if not k.endswith("_day")))


if __name__ == "__main__":
    main()


def _same_day_return(
    inbound: list[tuple],
    sold_today: list[tuple[str, int]],
    stock: dict[int, float],
    drugs: list[tuple],
    day: date,
) -> None:
    """A patient return of today's dispensing: the centre refuses it until its outbound has been sent."""
    if not sold_today:
        return
    serial, drug_id = sold_today[0]
    stock[drug_id] += 1
    stamp = day.strftime("%Y%m%d")
    inbound.append(
        (f"TY{stamp}900", 1, drug_id, "15", 1, drugs[drug_id - 1][12], f"{day} 20:30:00", None, None,
         None, "L900000", (day + timedelta(days=400)).isoformat(), serial, OPERATORS[0])
    )  # fmt: skip


def _snapshots(drugs: list[tuple], stock: dict[int, float], day: date, *, last: bool) -> list[tuple]:
    """The day's stock per item; on the last day item 1 is counted one box too many, so the HIS's own
    numbers do not balance there (the 进销存平衡 audit finds it)."""
    out = []
    for d in drugs:
        counted = max(round(stock[d[0]], 4), 0)
        if last and d[0] == 1:
            counted += 1
        out.append((day.isoformat(), d[0], counted, d[12]))
    return out
