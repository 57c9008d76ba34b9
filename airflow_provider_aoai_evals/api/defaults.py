"""Default values shared by the api layer, the connection form and the provider's Airflow options.

This module imports nothing, so the connection form and provider info (read at provider discovery) can use
the same numbers as the code without pulling in the api layer's dependencies.
"""

from __future__ import annotations

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
FLAVORS = ("openai", "azure")
AZURE_API_VERSIONS = ("v1", "preview")
#: The Airflow option (section, key) for how long waits starting in one triggerer reuse a connection read.
TRIGGER_CONNECTION_REUSE_OPTION = ("aoai_evals", "trigger_connection_reuse_seconds")
DEFAULT_TRIGGER_CONNECTION_REUSE_SECONDS = 30.0
