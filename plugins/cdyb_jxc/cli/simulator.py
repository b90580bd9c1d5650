"""``cdyb-jxc simulator serve|seed|dump`` (SPEC §8)."""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from cdyb_jxc.wire.profile import load_profile

if TYPE_CHECKING:
    from cdyb_jxc.simulator.server import Simulator
    from cdyb_jxc.simulator.store import SimulatorStore
    from cdyb_jxc.wire.profile import Profile


def add_parser(subparsers: Any) -> None:
    sim = subparsers.add_parser("simulator", help="the local simulator of the insurance centre")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    _add_serve(sim_sub)
    _add_seed(sim_sub)
    _add_dump(sim_sub)


def _add_serve(sim_sub: Any) -> None:
    serve = sim_sub.add_parser("serve", help="serve SOAP at /services/SjcjService until stopped")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--db", required=True, help="SQLite file of the simulator's store")
    serve.add_argument("--environment", choices=("test", "prod"), default="test")
    serve.add_argument("--faults", default="", help="fault spec, e.g. 'latency=0.01,drop_after_store=0.1'")
    serve.add_argument("--seed", type=int, default=0, help="seed of the fault sequence")
    serve.add_argument("--profile", default=None, help="interface profile TOML (default: packaged)")
    serve.set_defaults(func=_serve)


def _add_seed(sim_sub: Any) -> None:
    seed = sim_sub.add_parser("seed", help="load institutions and the 对码 registry from CSV")
    seed.add_argument("--db", required=True)
    seed.add_argument(
        "--institutions", required=True, help="CSV institution_code,environment,user,verification_code"
    )
    seed.add_argument(
        "--mapping",
        required=True,
        help="CSV institution_code,mapping_serial_no,insurance_item_code,off_hospital_delivery",
    )
    seed.set_defaults(func=_seed)


def _add_dump(sim_sub: Any) -> None:
    dump = sim_sub.add_parser("dump", help="write the accepted rows as CSV to stdout")
    dump.add_argument("--db", required=True)
    dump.add_argument("--environment", choices=("test", "prod"), default=None, help="only this environment")
    dump.add_argument("--profile", default=None)
    dump.set_defaults(func=_dump)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    from cdyb_jxc.simulator.store import SimulatorStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    profile = load_profile(args.profile)
    store = SimulatorStore(args.db)
    sim = _simulator(args, profile, store)
    if sim is None:
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"simulator ({args.environment}) serving {sim.url} (WSDL at {sim.url}?wsdl)", flush=True)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.httpd.server_close()
        store.close()
    return 0


def _simulator(args: argparse.Namespace, profile: Profile, store: SimulatorStore) -> Simulator | None:
    """The simulator bound to ``--host``/``--port``; ``None`` (the reason printed) for a bad ``--faults``
    spec or an address it cannot bind."""
    from cdyb_jxc.simulator.faults import FaultSpecError
    from cdyb_jxc.simulator.server import Simulator

    try:
        return Simulator(
            profile,
            store,
            environment=args.environment,
            host=args.host,
            port=args.port,
            faults=args.faults,
            seed=args.seed,
        )
    except FaultSpecError as err:
        print(f"cdyb-jxc: {err}", file=sys.stderr)
    except OSError as err:
        print(f"cdyb-jxc: cannot bind {args.host}:{args.port}: {err}", file=sys.stderr)
    return None


def _seed(args: argparse.Namespace) -> int:
    from cdyb_jxc.simulator.store import SimulatorStore

    store = SimulatorStore(args.db)
    try:
        with (
            open(args.institutions, encoding="utf-8-sig", newline="") as inst,
            open(args.mapping, encoding="utf-8-sig", newline="") as mapping,
        ):
            n_inst, n_map = store.seed_csv(inst, mapping)
    except (OSError, ValueError) as err:
        print(f"cdyb-jxc: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"seeded {n_inst} institution credentials and {n_map} mapping entries into {args.db}")
    return 0


def _dump(args: argparse.Namespace) -> int:
    from cdyb_jxc.simulator.store import SimulatorStore

    profile = load_profile(args.profile)
    store = SimulatorStore(args.db)
    fields = [f for f in profile.all_logical_fields() if f != "serial_no"]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["institution_code", "transaction_code", "serial_no", *fields])
    try:
        for row in store.accepted_rows(args.environment):
            writer.writerow(
                [row["institution_code"], row["transaction_code"], row["serial_no"]]
                + [row.get(f, "") for f in fields]
            )
    finally:
        store.close()
    return 0
