"""Jinja rendering that leaves the Evals API's own ``{{item.x}}`` / ``{{sample.x}}`` placeholders alone, and
a check that templated ids pulled something.

Data sources and graders carry placeholders that the *service* fills per row (``{{item.input}}``,
``{{sample.output_text}}``). Airflow renders template fields with Jinja, which would replace them with
empty strings; they are wrapped in ``{% raw %}`` first, so only Airflow's own expressions are rendered.

A template that pulls nothing still renders: ``{{ ti.xcom_pull(task_ids='typo', key='run_id') }}`` gives
the text ``'None'`` (Python's None as a string), an unset param gives ``''``. ``'None'`` is a well-formed id,
so without a check it is sent and the task log shows only the API's 404 for a run called ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

from airflow_provider_aoai_evals.api.errors import EvalsConfigError

_EVAL_PLACEHOLDER = re.compile(r"\{\{\s*(?:item|sample)(?:\.[^{}]*)?\s*\}\}")


def protect_eval_placeholders(text: str) -> str:
    return _EVAL_PLACEHOLDER.sub(lambda m: "{% raw %}" + m.group(0) + "{% endraw %}", text)


class EvalPlaceholderSafeTemplates:
    """Mixin for operators: render template fields without touching the service's placeholders."""

    def render_template(
        self, content: Any, context: Any, jinja_env: Any = None, seen_oids: set[int] | None = None
    ) -> Any:
        if isinstance(content, str) and "{{" in content:
            content = protect_eval_placeholders(content)
        return super().render_template(content, context, jinja_env, seen_oids)  # type: ignore[misc]


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def check_rendered_id(parameter: str, value: Any, template: Any = None) -> None:
    """Refuse an id that a template rendered from nothing (``'None'``, ``''``, or None with native rendering).

    ``template`` is the field's value before rendering, quoted in the error so the user sees which
    ``task_ids``/``key`` to fix. A value that was not templated is left to ``validate_id`` (an explicit
    ``None`` baseline means "no baseline", and an empty literal already fails as empty).
    """
    pulled_nothing = value is None or (isinstance(value, str) and value.strip() in ("None", ""))
    if not pulled_nothing:
        return
    if _is_template(template):
        raise EvalsConfigError(
            parameter,
            f"rendered as {value!r}: the template pulled nothing - check the task_ids/key (or the param or "
            f"variable name) in {template}",
        )
    if isinstance(value, str) and value.strip() == "None":
        raise EvalsConfigError(
            parameter,
            "is the text 'None', not an id: a template or expression that pulled nothing produced it - check "
            "the task_ids/key it reads",
        )


class TemplatedIds:
    """Mixin for operators and sensors: ``check_rendered_ids()`` fails, before any request, on an id field
    whose template pulled nothing, quoting the template.

    Airflow overwrites template fields with their rendered values, so the templates are remembered as
    rendering starts. ``_do_render_template_fields`` is the one method both plain and mapped (unmapped at
    run time) tasks render through, on Airflow 3.1 and 3.3 alike; were it ever bypassed, the check still
    runs, only without the quote.
    """

    #: The templated fields that hold ids sent in request paths.
    templated_ids: ClassVar[tuple[str, ...]] = ()

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Any,
        jinja_env: Any,
        seen_oids: set[int],
    ) -> None:
        if parent is self:
            remembered = self.__dict__.setdefault("_id_templates", {})
            for name in self.templated_ids:
                remembered.setdefault(name, getattr(self, name, None))
        super()._do_render_template_fields(  # type: ignore[misc]
            parent=parent,
            template_fields=template_fields,
            context=context,
            jinja_env=jinja_env,
            seen_oids=seen_oids,
        )

    def check_rendered_ids(self) -> None:
        templates: dict[str, Any] = self.__dict__.get("_id_templates", {})
        for name in self.templated_ids:
            check_rendered_id(name, getattr(self, name, None), templates.get(name))
