"""Apache Airflow provider for the OpenAI and Azure OpenAI Evals API."""

from __future__ import annotations

__version__ = "0.1.0"
