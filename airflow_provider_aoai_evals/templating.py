"""Jinja rendering that leaves the Evals API's own ``{{item.x}}`` / ``{{sample.x}}`` placeholders alone.

Data sources and graders carry placeholders that the *service* fills per row (``{{item.input}}``,
``{{sample.output_text}}``). Airflow renders template fields with Jinja, which would replace them with
empty strings; they are wrapped in ``{% raw %}`` first, so only Airflow's own expressions are rendered.
"""

from __future__ import annotations

import re
from typing import Any

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
