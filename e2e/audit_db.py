"""Secret audit of an Airflow metadata DB, run with that deployment's Python and environment:

    python e2e/audit_db.py SECRET [CONTROL]

Reads, through Airflow's own models (so Fernet-encrypted values are decrypted): every trigger's kwargs,
every XCom value (deserialized), every rendered template field, connections and variables; then every row
of every table (SELECT *). Prints one JSON document: row counts, where SECRET was found (must be nowhere),
and a positive control: CONTROL (a value known to be in the trigger kwargs, e.g. an eval id) must be found
in the decrypted kwargs but not in the raw, encrypted column, which proves the kwargs were decrypted.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def text_of(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        return b.decode("utf-8", "replace") + " " + b.hex()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def main() -> None:
    secret = sys.argv[1]
    control = sys.argv[2] if len(sys.argv) > 2 else None
    needles = [secret, secret.encode().hex()]

    from airflow.models.connection import Connection
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.trigger import Trigger
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import MetaData, select, text

    out: dict[str, Any] = {"hits": [], "counts": {}}

    def check(where: str, value: Any) -> None:
        t = text_of(value)
        if any(n in t for n in needles):
            out["hits"].append({"where": where, "excerpt": t[:300].replace(secret, "<SECRET>")})

    with create_session() as session:
        triggers = session.scalars(select(Trigger)).all()
        out["counts"]["triggers"] = len(triggers)
        decrypted_blob = ""
        for trig in triggers:
            kwargs = trig.kwargs  # decrypted by Airflow (Fernet)
            decrypted_blob += text_of(kwargs)
            check(f"trigger {trig.id} {trig.classpath} kwargs (decrypted)", kwargs)
        raw = [r[0] for r in session.execute(text("SELECT kwargs FROM trigger")).all()]
        raw_blob = " ".join(raw)
        check("trigger.kwargs (raw column)", raw_blob)
        # Airflow 3.3 Fernet-encrypts the kwargs of asset-watcher triggers, but stores the kwargs of deferred
        # tasks as plain JSON (execution API: "assume it doesn't need to be" encrypted).
        out["counts"]["trigger_kwargs_plain_json"] = sum(1 for r in raw if r.startswith("{"))
        out["counts"]["trigger_kwargs_fernet"] = sum(1 for r in raw if not r.startswith("{"))
        if control:
            out["control"] = {
                "value": control,
                "in_decrypted_kwargs": control in decrypted_blob,
                "in_raw_column": control in raw_blob,
            }

        xcoms = session.scalars(select(XComModel)).all()
        out["counts"]["xcoms"] = len(xcoms)
        for x in xcoms:
            check(f"xcom {x.dag_id}/{x.run_id}/{x.task_id}[{x.map_index}] {x.key}", XComModel.deserialize_value(x))

        rtifs = session.scalars(select(RenderedTaskInstanceFields)).all()
        out["counts"]["rendered_task_instance_fields"] = len(rtifs)
        for r in rtifs:
            check(f"rendered fields {r.dag_id}/{r.run_id}/{r.task_id}[{r.map_index}]", r.rendered_fields)

        conns = session.scalars(select(Connection)).all()
        out["counts"]["connections"] = len(conns)
        for c in conns:
            check(f"connection {c.conn_id}", [c.password, c.extra, c.host, c.login])
        variables = session.scalars(select(Variable)).all()
        out["counts"]["variables"] = len(variables)
        for v in variables:
            check(f"variable {v.key}", v.val)

        meta = MetaData()
        meta.reflect(bind=session.get_bind())
        rows = 0
        for table in meta.sorted_tables:
            for row in session.execute(select(table)).all():
                rows += 1
                check(f"table {table.name}", [text_of(v) for v in row])
        out["counts"]["tables"] = len(meta.sorted_tables)
        out["counts"]["rows"] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
