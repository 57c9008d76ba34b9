# ruff: noqa: T201 - the result is one JSON document on stdout
"""Secret audit of an Airflow metadata DB, run with that deployment's Python and environment:

    python e2e/audit_db.py SECRET [CONTROL] [--plant]

Reads, through Airflow's own models (so Fernet-encrypted values are decrypted): every trigger's kwargs,
every XCom value (deserialized), every rendered template field, connections and variables; then every row
of every table (SELECT *). Prints one JSON document: row counts, and where SECRET was found (must be nowhere).

``CONTROL``: a value known to be in the trigger kwargs (e.g. an eval id). Reported as found or not in
the decrypted kwargs and in the raw column; for an encrypted trigger (an asset watcher's) it is found only after
decryption, which proves the kwargs were decrypted before the search.

``--plant`` (the negative control): in one transaction that is rolled back at the end (nothing is committed),
write SECRET into a new trigger (through ``Trigger(...)``, so Fernet-encrypted like any trigger), into a new
XCom row and into an existing rendered-template-fields row, then run the same audit. It must report each of
them; the trigger only in its decrypted kwargs, not in the raw column (a raw search alone would miss it).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

PLANTED_TRIGGER = "e2e.planted.CanaryTrigger"
PLANTED_XCOM_KEY = "e2e_planted_canary"


def text_of(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        return b.decode("utf-8", "replace") + " " + b.hex()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def audit(session: Any, secret: str, control: str | None) -> dict[str, Any]:
    from airflow.models.connection import Connection
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.trigger import Trigger
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel
    from sqlalchemy import MetaData, select, text

    needles = [secret, secret.encode().hex()]
    out: dict[str, Any] = {"hits": [], "counts": {}}

    def check(kind: str, where: str, value: Any) -> None:
        t = text_of(value)
        if any(n in t for n in needles):
            out["hits"].append({"kind": kind, "where": where, "excerpt": t[:300].replace(secret, "<SECRET>")})

    triggers = session.scalars(select(Trigger)).all()
    out["counts"]["triggers"] = len(triggers)
    decrypted_blob = ""
    for trig in triggers:
        kwargs = trig.kwargs  # decrypted by Airflow (Fernet)
        decrypted_blob += text_of(kwargs)
        check("trigger_kwargs_decrypted", f"trigger {trig.id} {trig.classpath} kwargs (decrypted)", kwargs)
    raw = [str(r[0]) for r in session.execute(text("SELECT kwargs FROM trigger")).all()]
    raw_blob = " ".join(raw)
    check("trigger_kwargs_raw", "trigger.kwargs (raw column)", raw_blob)
    # Airflow 3.3 Fernet-encrypts the kwargs of asset-watcher triggers, but the execution API stores the kwargs
    # of deferred tasks as they come (plain JSON); both forms are counted.
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
        where = f"xcom {x.dag_id}/{x.run_id}/{x.task_id}[{x.map_index}] {x.key}"
        check("xcom", where, XComModel.deserialize_value(x))

    rtifs = session.scalars(select(RenderedTaskInstanceFields)).all()
    out["counts"]["rendered_task_instance_fields"] = len(rtifs)
    for r in rtifs:
        check(
            "rendered_fields",
            f"rendered fields {r.dag_id}/{r.run_id}/{r.task_id}[{r.map_index}]",
            r.rendered_fields,
        )

    conns = session.scalars(select(Connection)).all()
    out["counts"]["connections"] = len(conns)
    for c in conns:
        check("connection", f"connection {c.conn_id}", [c.password, c.extra, c.host, c.login])
    variables = session.scalars(select(Variable)).all()
    out["counts"]["variables"] = len(variables)
    for v in variables:
        check("variable", f"variable {v.key}", v.val)

    meta = MetaData()
    meta.reflect(bind=session.get_bind())
    rows = 0
    per_table: dict[str, int] = {}
    for table in meta.sorted_tables:
        n = 0
        for row in session.execute(select(table)).all():
            n += 1
            check(f"table:{table.name}", f"table {table.name}", [text_of(v) for v in row])
        per_table[table.name] = n
        rows += n
    out["counts"]["tables"] = len(meta.sorted_tables)
    out["counts"]["rows"] = rows
    out["counts"]["rows_per_nonempty_table"] = {k: v for k, v in sorted(per_table.items()) if v}
    return out


def plant(session: Any, secret: str) -> list[str]:
    """Write the secret where the audit must find it (the caller rolls the transaction back)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    planted = []
    trig = Trigger(PLANTED_TRIGGER, {"conn_id": "aoai_evals_default", "api_key": secret})
    assert not trig.encrypted_kwargs.startswith("{"), "Trigger(...) did not encrypt its kwargs"
    assert secret not in trig.encrypted_kwargs
    session.add(trig)
    planted.append("trigger")

    x = session.scalars(select(XComModel).limit(1)).first()
    if x is not None:
        session.add(
            XComModel(
                dag_run_id=x.dag_run_id,
                task_id=x.task_id,
                map_index=x.map_index,
                key=PLANTED_XCOM_KEY,
                dag_id=x.dag_id,
                run_id=x.run_id,
                value=XComModel.serialize_value({"api_key": secret}),
            )
        )
        planted.append("xcom")

    r = session.scalars(select(RenderedTaskInstanceFields).limit(1)).first()
    if r is not None:
        r.rendered_fields = {**r.rendered_fields, "planted_field": f"Bearer {secret}"}
        planted.append("rendered_fields")
    session.flush()
    return planted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("secret")
    parser.add_argument("control", nargs="?")
    parser.add_argument("--plant", action="store_true")
    args = parser.parse_args()

    from airflow import settings

    assert settings.Session is not None, "Airflow's ORM is not configured"
    session = settings.Session()
    try:
        planted = plant(session, args.secret) if args.plant else []
        out = audit(session, args.secret, args.control)
        if args.plant:
            kinds = {h["kind"] for h in out["hits"]}
            out["negative_control"] = {
                "planted": planted,
                "found": {
                    "trigger_kwargs_decrypted": "trigger_kwargs_decrypted" in kinds,
                    "trigger_kwargs_raw_column": "trigger_kwargs_raw" in kinds,
                    "table_scan_trigger": "table:trigger" in kinds,
                    "xcom": "xcom" in kinds,
                    "table_scan_xcom": "table:xcom" in kinds,
                    "rendered_fields": "rendered_fields" in kinds,
                    "table_scan_rendered_task_instance_fields": "table:rendered_task_instance_fields"
                    in kinds,
                },
            }
    finally:
        session.rollback()  # --plant: nothing planted is ever committed
        session.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
